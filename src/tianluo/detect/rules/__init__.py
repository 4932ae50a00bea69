"""Rules as data: a checked YAML rule language, its vectorised compiler, the rule detector and the built-in packs.

Typical use::

    from tianluo.detect.rules import RuleDetector, load_rules
    rules = load_rules(thresholds="my_thresholds.yaml")        # built-in packs, my thresholds
    alerts = RuleDetector(rules, thresholds="my_thresholds.yaml").detect(data)

`validate_rule_file(path)` lists every problem of a rule file with its path in the
tree; `rule_table(rules)` is the listing `tianluo rules list` prints.
"""

from tianluo.detect.rules.engine import RuleDetector, builtin_packs, load_rules, rule_table, validate_rule_file
from tianluo.detect.rules.language import (
    FUNCTIONS,
    LEG_COLUMNS,
    THRESHOLDS_FILE,
    Rule,
    RuleError,
    Thresholds,
)

__all__ = [
    "FUNCTIONS",
    "LEG_COLUMNS",
    "THRESHOLDS_FILE",
    "Rule",
    "RuleDetector",
    "RuleError",
    "Thresholds",
    "builtin_packs",
    "load_rules",
    "rule_table",
    "validate_rule_file",
]
