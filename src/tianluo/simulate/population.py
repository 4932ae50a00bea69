"""The simulated bank's world: its customers, their counterparties at other banks and abroad, their accounts.

Everything a behaviour or a typology needs to know about a party (who employs
whom, who a person's regular contacts are, which shops are popular) is drawn
here once, as integer-indexed numpy arrays, so that transaction generation is
pure array arithmetic. Party and account tables are materialised as Arrow at
the end of this stage; they are small next to the transactions.

Index layout (parties and their primary accounts share an index):

    [own persons P][external persons Px][own enterprises E][external enterprises Ex][foreign F]

followed by accounts only: own persons' second accounts, then the bank's
internal accounts (one cash account per branch, loans, interest, wealth
management). The bank itself is the last party.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tianluo.reference import china_ids
from tianluo.simulate import names
from tianluo.simulate.calendar import DAY_S, Calendar

#: Other domestic banks where counterparties hold accounts, with a rough share of accounts.
DOMESTIC_BANKS: tuple[tuple[str, float], ...] = (
    ("ICBC", 18), ("CCB", 15), ("ABC", 15), ("BOC", 11), ("PSBC", 10), ("BOCOM", 6),
    ("CMB", 8), ("CIB", 5), ("SPDB", 4), ("CITIC", 4), ("PAB", 4),
)
#: Card BIN (first six digits of a UnionPay debit card) per bank; the reporting bank uses 622266.
CARD_BINS: dict[str, str] = {
    "ICBC": "621226", "CCB": "621700", "ABC": "622848", "BOC": "621661", "PSBC": "621799",
    "BOCOM": "622262", "CMB": "622588", "CIB": "622909", "SPDB": "622521", "CITIC": "622690",
    "PAB": "622155",
}
OWN_CARD_BIN = "622266"
#: Foreign correspondent banks: (bank id, ISO 3166 country, currencies its accounts are held in).
FOREIGN_BANKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("HSBC_HK", "HK", ("HKD", "USD")), ("BOC_HK", "HK", ("HKD", "USD")), ("JPMC_US", "US", ("USD",)),
    ("CITI_US", "US", ("USD",)), ("DEUT_DE", "DE", ("EUR",)), ("BNP_FR", "FR", ("EUR",)),
    ("DBS_SG", "SG", ("USD",)),
)
#: Currencies that appear in the data, and the approximate CNY value of one unit in 2024
#: (only used to give foreign-currency amounts realistic magnitudes; ingest applies real rates).
CURRENCIES: tuple[str, ...] = ("CNY", "USD", "HKD", "EUR")
CNY_PER_UNIT = np.array([1.0, 7.10, 0.91, 7.80])

PERSON, ENTERPRISE, INTERNAL = 0, 1, 2
ACCOUNT_TYPES = ("personal", "corporate", "internal")

#: Adult age bands and their share of account holders.
_AGE_BANDS = ((18, 25, 9), (25, 35, 17), (35, 45, 16), (45, 55, 18), (55, 65, 16), (65, 75, 11), (75, 86, 6))
#: Pay days (day of month; 31 = last day) and how many employers use each.
_PAYDAYS = np.array([5, 10, 15, 20, 25, 31])
_PAYDAY_SHARE = np.array([0.15, 0.25, 0.2, 0.1, 0.15, 0.15])
#: Industries whose enterprises sell to consumers (card / QR payments, cash takings).
_RETAIL = ("F", "H", "O", "R", "P", "Q")
#: Industries that bill households monthly (power, gas, water, telecoms).
_BILLERS = ("D", "I")


@dataclass
class Population:
    """Parties and accounts, plus the relationships that drive their transactions.

    Account-indexed arrays have one entry per account; person arrays one per person
    (own then external, same index as their primary account); enterprise arrays one per
    enterprise (own, external, foreign: enterprise `i` has account `ent0 + i`).
    """

    cal: Calendar
    banks: list[str]
    bank_country: np.ndarray
    parties: pa.Table
    accounts: pa.Table
    account_ids: pa.StringArray
    # per account
    acc_party: np.ndarray
    acc_bank: np.ndarray
    acc_kind: np.ndarray
    acc_own: np.ndarray
    acc_currency: np.ndarray
    licit_from: np.ndarray
    licit_until: np.ndarray
    # layout
    n_own_persons: int
    n_ext_persons: int
    n_own_ents: int
    n_ext_ents: int
    n_foreign: int
    secondary: np.ndarray
    branch_accounts: np.ndarray
    branch_province: np.ndarray
    loan_account: int
    interest_account: int
    wmp_account: int
    # persons
    person_weight: np.ndarray
    person_branch: np.ndarray
    person_birth_year: np.ndarray
    contacts: np.ndarray
    employer: np.ndarray
    salary: np.ndarray
    loan_amount: np.ndarray
    loan_day: np.ndarray
    investor: np.ndarray
    foreign_tie: np.ndarray
    dormant: np.ndarray
    # enterprises
    ent_letter: np.ndarray
    ent_weight: np.ndarray
    ent_individual: np.ndarray
    payday: np.ndarray
    pay_hour: np.ndarray
    merchant_weight: np.ndarray
    biller_weight: np.ndarray
    suppliers: np.ndarray
    trade_partner: np.ndarray
    cash_business: np.ndarray
    ent_branch: np.ndarray
    ent_loan_amount: np.ndarray
    ent_loan_day: np.ndarray

    @property
    def n_persons(self) -> int:
        return self.n_own_persons + self.n_ext_persons

    @property
    def ent0(self) -> int:
        """Account (and party) index of the first enterprise."""
        return self.n_persons


def _permuted_serials(n: int, modulus: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct serial numbers below `modulus` that do not look sequential.

    An affine map i → (a·i + b) mod 10^k with `a` coprime to 10 is a bijection, so account
    numbers are unique by construction, with no collision check.
    """
    a = 7_919_131  # odd and not a multiple of 5
    b = int(rng.integers(0, modulus))
    return (np.arange(n, dtype=np.int64) * a + b) % modulus


def _card_numbers(bins: np.ndarray, serials: np.ndarray) -> pa.StringArray:
    """19-digit UnionPay debit card numbers: 6-digit BIN per row, 12-digit serial, Luhn digit."""
    n = len(serials)
    mat = np.empty((n, 19), dtype=np.uint8)
    mat[:, :6] = bins
    mat[:, 6:18] = china_ids.digits_matrix(serials, 12)
    mat[:, 18] = 48 + china_ids.luhn_check_digits(mat[:, :18] - 48)
    return china_ids.fixed_width_strings(mat)


def _corporate_numbers(bank_codes: np.ndarray, region4: np.ndarray, serials: np.ndarray) -> pa.StringArray:
    """17-digit corporate settlement account numbers: 2-digit bank code, city code, serial."""
    n = len(serials)
    mat = np.empty((n, 17), dtype=np.uint8)
    mat[:, :2] = china_ids.digits_matrix(bank_codes, 2)
    mat[:, 2:6] = china_ids.digits_matrix(region4, 4)
    mat[:, 6:] = china_ids.digits_matrix(serials, 11)
    return china_ids.fixed_width_strings(mat)


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(n))


def _date32(days_since_epoch: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(days_since_epoch.astype(np.int32), type=pa.int32(), mask=mask).cast(pa.date32())


def build_population(
    persons: int, enterprises: int, bank: str, cal: Calendar, rng: np.random.Generator
) -> Population:
    """Draw the whole population for a simulation (see the module docstring for the layout)."""
    n_p, n_e = persons, enterprises
    n_px, n_ex, n_f = max(50, n_p // 2), max(20, n_e // 2), max(10, n_e // 40)
    n_pers, n_ents = n_p + n_px, n_e + n_ex + n_f
    region_list = china_ids.regions()
    rw = np.array([w for _, w in china_ids.REGIONS])
    region_codes = np.array([r.code for r in region_list])
    start_days = (cal.start - dt.date(1970, 1, 1)).days

    # --- banks ------------------------------------------------------------------------------
    domestic = [b for b, _ in DOMESTIC_BANKS if b != bank]
    dw = np.array([w for b, w in DOMESTIC_BANKS if b != bank])
    foreign = [b for b, _, _ in FOREIGN_BANKS if b != bank]
    banks = [bank, *domestic, *foreign]
    countries = ["CN"] * (1 + len(domestic)) + [c for b, c, _ in FOREIGN_BANKS if b != bank]
    country_codes = sorted(set(countries))
    bank_country = np.array([country_codes.index(c) for c in countries], dtype=np.int16)

    # --- persons ------------------------------------------------------------------------------
    bands = np.array([(lo, hi) for lo, hi, _ in _AGE_BANDS])
    band_w = np.array([w for *_, w in _AGE_BANDS], dtype=np.float64)
    band = rng.choice(len(_AGE_BANDS), n_pers, p=band_w / band_w.sum())
    age_days = (rng.uniform(bands[band, 0], bands[band, 1]) * 365.25).astype(np.int64)
    birth = np.datetime64(cal.start) - age_days.astype("timedelta64[D]")
    birth_year = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    male = rng.random(n_pers) < 0.51
    home = rng.choice(len(region_list), n_pers, p=rw / rw.sum())
    # Two in five people were born outside the district they live in (internal migration).
    born = np.where(rng.random(n_pers) < 0.6, home, rng.choice(len(region_list), n_pers, p=rw / rw.sum()))
    person_ids = china_ids.generate_resident_ids(rng, region_codes[born], birth, np.where(male, "M", "F"))

    # --- enterprises ---------------------------------------------------------------------------
    ind_names = [i for i, _ in names.INDUSTRIES]
    iw = np.array([w for _, w in names.INDUSTRIES])
    ind = rng.choice(len(ind_names), n_ents, p=iw / iw.sum())
    # Utilities and telecoms that bill households must exist however small the population.
    for k, letter in enumerate(("D", "D", "I")):
        ind[n_e + k] = next(i for i, n in enumerate(ind_names) if n.startswith(letter))
    letters = np.array([ind_names[i][0] for i in ind])
    retail = np.isin(letters, _RETAIL)
    individual = np.where(retail, rng.random(n_ents) < 0.4, rng.random(n_ents) < 0.03)
    individual[n_e : n_e + 3] = False
    individual[n_e + n_ex :] = False
    ent_region = rng.choice(len(region_list), n_ents, p=rw / rw.sum())
    domestic_n = n_e + n_ex
    # Domestic enterprises and, last, the bank itself (registered in Xicheng, Beijing).
    uscc = china_ids.generate_usccs(rng, np.append(region_codes[ent_region[:domestic_n]], "110102"),
                                    np.append(np.where(individual[:domestic_n], "2", "1"), "1"))
    ent_weight = np.where(individual, _lognormal(rng, 0.3, 0.5, n_ents), _lognormal(rng, 1.0, 1.1, n_ents))
    capital = np.where(
        individual,
        np.maximum(np.round(_lognormal(rng, 50_000, 0.8, n_ents), -3), 1000),
        np.maximum(np.round(_lognormal(rng, 1_000_000, 1.2, n_ents), -4), 10_000),
    )
    age_years = np.where(individual, rng.uniform(0.2, 15, n_ents), np.exp(rng.uniform(np.log(0.3), np.log(30), n_ents)))
    founded = start_days - (age_years * 365.25).astype(np.int64)

    # --- parties table ---------------------------------------------------------------------------
    prov = pa.array([r.province for r in region_list])
    city = pa.array([r.city for r in region_list])
    dist = pa.array([r.district for r in region_list])
    city_short = pa.array([r.city_short for r in region_list])

    def by_region(arr: pa.Array, idx: np.ndarray) -> pa.Array:
        return pc.take(arr, pa.array(idx))

    person_addr = names.addresses(rng, by_region(prov, home), by_region(city, home), by_region(dist, home),
                                  residential=True)
    dom = ent_region[:domestic_n]
    ent_names_dom = names.company_names(rng, by_region(city_short, dom), by_region(dist, dom),
                                        letters[:domestic_n], individual[:domestic_n])
    ent_addr_dom = names.addresses(rng, by_region(prov, dom), by_region(city, dom), by_region(dist, dom),
                                   residential=False)
    foreign_country = rng.choice(sorted(names.FOREIGN_NAMES), n_f)
    foreign_names = [names.FOREIGN_NAMES[c][i % len(names.FOREIGN_NAMES[c])] for i, c in enumerate(foreign_country)]
    # The forced utilities and telecom get the names everyone recognises on a bill.
    power, gas, mobile = (region_list[ent_region[n_e + k]] for k in range(3))
    utility_names = [f"国网{power.province}电力有限公司", f"{gas.city_short}燃气集团有限公司",
                     f"中国移动通信集团{mobile.province.removesuffix('省')}有限公司"]
    ent_names_dom = pa.concat_arrays([ent_names_dom.slice(0, n_e), pa.array(utility_names),
                                      ent_names_dom.slice(n_e + 3)])

    n_parties = n_pers + n_ents + 1
    phones = china_ids.generate_mobiles(rng, n_pers + domestic_n)
    bank_party = pa.array(["天罗银行股份有限公司"]) if bank == "TIANLUO_BANK" else pa.array([bank])

    def cat(*parts: pa.Array) -> pa.Array:
        return pa.concat_arrays([p.cast(pa.string()) if p.type != pa.string() else p for p in parts])

    party_id = china_ids.fixed_width_strings(np.concatenate(
        [np.full((n_parties, 1), ord("P"), dtype=np.uint8), china_ids.digits_matrix(np.arange(1, n_parties + 1), 9)],
        axis=1))
    domestic_party = np.zeros(n_parties, dtype=bool)
    domestic_party[n_pers : n_pers + domestic_n] = True
    domestic_party[-1] = True  # the bank
    parties = pa.table({
        "party_id": party_id,
        "kind": pa.array(["person"] * n_pers + ["enterprise"] * (n_ents + 1)),
        "name": cat(names.person_names(rng, male), ent_names_dom, pa.array(foreign_names, pa.string()), bank_party),
        "id_number": cat(person_ids, pa.nulls(n_ents + 1, pa.string())),
        "phone": cat(phones, pa.nulls(n_f + 1, pa.string())),
        "address": cat(person_addr, ent_addr_dom, pa.nulls(n_f, pa.string()), pa.array(["北京市西城区金融大街1号"])),
        "uscc": cat(pa.nulls(n_pers, pa.string()), uscc.slice(0, domestic_n), pa.nulls(n_f, pa.string()),
                    uscc.slice(domestic_n)),
        "birth_year": pa.array(np.concatenate([birth_year, np.zeros(n_ents + 1)]).astype(np.int16),
                               mask=np.arange(n_parties) >= n_pers),
        "gender": pa.concat_arrays([pc.if_else(pa.array(male), "M", "F"), pa.nulls(n_ents + 1, pa.string())]),
        "region": cat(pa.array(region_codes[home]), pa.array(region_codes[ent_region[:domestic_n]]),
                      pa.array(foreign_country.astype(str)), pa.array(["110102"])),
        # Registry facts are known for domestic firms only, not for foreign counterparties.
        "industry": cat(pa.nulls(n_pers, pa.string()), pc.take(pa.array(ind_names), pa.array(ind[:domestic_n])),
                        pa.nulls(n_f, pa.string()), pa.array(["J 金融业"])),
        "registered_capital": pa.array(
            np.concatenate([np.zeros(n_pers), capital[:domestic_n], np.zeros(n_f), [1.0e10]]), mask=~domestic_party),
        "founded": _date32(np.concatenate([np.zeros(n_pers, np.int64), founded[:domestic_n], np.zeros(n_f, np.int64),
                                           [start_days - 30 * 365]]), mask=~domestic_party),
    })

    # --- accounts ------------------------------------------------------------------------------
    has_second = rng.random(n_p) < 0.12
    n_sec = int(has_second.sum())
    n_reg = len(region_list)
    n_acc = n_pers + n_ents + n_sec + n_reg + 3
    acc_party = np.concatenate([np.arange(n_pers + n_ents), np.flatnonzero(has_second),
                                np.full(n_reg + 3, n_parties - 1)])
    acc_kind = np.concatenate([np.full(n_pers, PERSON), np.full(n_ents, ENTERPRISE), np.full(n_sec, PERSON),
                               np.full(n_reg + 3, INTERNAL)]).astype(np.uint8)
    own = np.zeros(n_acc, dtype=bool)
    own[:n_p] = True
    own[n_pers : n_pers + n_e] = True
    own[n_pers + n_ents :] = True
    acc_bank = np.zeros(n_acc, dtype=np.int16)
    ext_bank = 1 + rng.choice(len(domestic), n_px + n_ex, p=dw / dw.sum())
    acc_bank[n_p:n_pers] = ext_bank[:n_px]
    acc_bank[n_pers + n_e : n_pers + n_e + n_ex] = ext_bank[n_px:]
    f_bank = rng.integers(0, len(foreign), n_f)
    acc_bank[n_pers + n_e + n_ex : n_pers + n_ents] = 1 + len(domestic) + f_bank
    acc_currency = np.zeros(n_acc, dtype=np.uint8)
    f_cur = [FOREIGN_BANKS[[b for b, _, _ in FOREIGN_BANKS].index(foreign[i])][2] for i in f_bank]
    acc_currency[n_pers + n_e + n_ex : n_pers + n_ents] = [CURRENCIES.index(c[int(rng.integers(0, len(c)))])
                                                           for c in f_cur]

    # Account numbers: cards for persons, settlement accounts for enterprises. One affine
    # permutation per kind makes every serial distinct, hence every number distinct.
    bin_table = np.array([list((OWN_CARD_BIN if b == bank else CARD_BINS.get(b, "620000")).encode())
                          for b in banks], dtype=np.uint8)
    card_owner = np.concatenate([np.arange(n_pers), n_pers + n_ents + np.arange(n_sec)])
    cards = _card_numbers(bin_table[acc_bank[card_owner]], _permuted_serials(n_pers + n_sec, 10**12, rng))
    corp_bank = acc_bank[n_pers : n_pers + domestic_n].astype(np.int64)
    corp = _corporate_numbers(np.where(corp_bank == 0, 31, 10 + corp_bank),
                              region_codes[ent_region[:domestic_n]].astype(np.int64) // 100,
                              _permuted_serials(domestic_n, 10**11, rng))
    foreign_ids = pa.array([f"{countries[b]}{b:02d}{s:010d}"
                            for b, s in zip(acc_bank[n_pers + domestic_n : n_pers + n_ents],
                                            _permuted_serials(n_f, 10**10, rng), strict=True)], pa.string())
    internal_ids = pa.array([f"{bank}-CASH-{r.code}" for r in region_list]
                            + [f"{bank}-LOAN", f"{bank}-INTEREST", f"{bank}-WMP"])
    account_ids = pa.concat_arrays([cards.slice(0, n_pers), corp, foreign_ids, cards.slice(n_pers, n_sec),
                                    internal_ids])

    # Opening and closing: most accounts predate the window; a few open or close inside it.
    opened = np.full(n_acc, start_days, dtype=np.int64)
    adult = start_days - age_days[:n_p] + int(18 * 365.25)
    opened[:n_p] = np.maximum(adult, start_days - (rng.uniform(0.1, 20, n_p) * 365.25).astype(np.int64))
    opened[n_pers : n_pers + n_e] = np.minimum(founded[:n_e] + rng.integers(0, 60, n_e), start_days - 1)
    sec_owner = np.flatnonzero(has_second)
    second_age = (rng.uniform(0.1, 10, n_sec) * 365.25).astype(np.int64)
    opened[n_pers + n_ents : n_pers + n_ents + n_sec] = np.maximum(opened[sec_owner], start_days - second_age)
    opened[n_pers + n_ents + n_sec :] = start_days - 20 * 365
    licit_from = np.full(n_acc, np.iinfo(np.int64).min // 2, dtype=np.int64)
    licit_until = np.full(n_acc, np.iinfo(np.int64).max // 2, dtype=np.int64)
    closed = np.full(n_acc, -1, dtype=np.int64)
    # 3 % of persons and 2 % of enterprises opened their account during the window.
    fresh = np.flatnonzero(rng.random(n_p) < 0.03)
    fresh_e = n_pers + np.flatnonzero(rng.random(n_e) < 0.02)
    for idx in (fresh, fresh_e):
        day = rng.integers(0, max(1, cal.days - 7), len(idx))
        opened[idx] = start_days + day
        licit_from[idx] = cal.t0 + day * DAY_S + 9 * 3600
    # 2 % of persons close theirs during the window; 30 % of second accounts were closed before.
    shut = np.flatnonzero((rng.random(n_p) < 0.02) & (opened[:n_p] < start_days))
    close_day = rng.integers(cal.days // 4, cal.days, len(shut)) if cal.days > 4 else np.full(len(shut), cal.days - 1)
    closed[shut] = start_days + close_day
    licit_until[shut] = cal.t0 + close_day * DAY_S
    sec_closed = np.flatnonzero(rng.random(n_sec) < 0.3)
    sec_acc = n_pers + n_ents + sec_closed
    closed[sec_acc] = start_days - rng.integers(1, 700, len(sec_closed))
    opened[sec_acc] = np.minimum(opened[sec_acc], closed[sec_acc] - 30)
    licit_until[sec_acc] = licit_from[sec_acc]
    # Dormant customers: accounts opened years ago that nobody has used for months.
    candidates = np.flatnonzero((opened[:n_p] < start_days - 2 * 365) & (closed[:n_p] < 0))
    n_dormant = min(len(candidates) // 5, max(8, n_p // 50))
    dormant = np.sort(rng.choice(candidates, n_dormant, replace=False))
    licit_from[dormant] = licit_until[dormant] = np.iinfo(np.int64).max // 2
    accounts = pa.table({
        "account_id": account_ids,
        "party_id": pc.take(party_id, pa.array(acc_party)),
        "bank": pc.take(pa.array(banks), pa.array(acc_bank)),
        "opened": _date32(opened, mask=~own),
        "closed": _date32(np.maximum(closed, 0), mask=closed < 0),
        "type": pc.take(pa.array(ACCOUNT_TYPES), pa.array(acc_kind)),
    })

    # --- relationships -----------------------------------------------------------------------------
    person_weight = _lognormal(rng, 1.0, 0.8, n_pers)
    person_weight[dormant] = 0.0
    contacts = rng.integers(0, n_pers - 1, (n_p, 8))
    contacts += contacts >= np.arange(n_p)[:, None]  # never oneself
    age = (cal.start.year - birth_year).astype(np.int64)
    employ_p = np.select([age < 23, age < 60], [0.4, 0.85], 0.12)
    employed = rng.random(n_pers) < employ_p
    employed[n_p:] &= rng.random(n_px) < 0.4  # external people matter only if paid by our clients
    employed[dormant] = False
    dom_w = ent_weight[:domestic_n].copy()
    dom_w[:n_e] *= 3.0  # payroll programmes: our corporate clients pay many of our retail clients
    employer = np.full(n_pers, -1, dtype=np.int64)
    own_emp = np.flatnonzero(employed[:n_p])
    employer[own_emp] = n_pers + rng.choice(domestic_n, len(own_emp), p=dom_w / dom_w.sum())
    ext_emp = n_p + np.flatnonzero(employed[n_p:])
    employer[ext_emp] = n_pers + rng.choice(n_e, len(ext_emp), p=dom_w[:n_e] / dom_w[:n_e].sum())
    salary = np.round(_lognormal(rng, 6500, 0.45, n_pers), 2)
    payday = rng.choice(_PAYDAYS, n_ents, p=_PAYDAY_SHARE)
    pay_hour = rng.integers(8, 11, n_ents)
    borrower = (rng.random(n_p) < 0.35) & (age[:n_p] >= 25) & (age[:n_p] < 60) & (person_weight[:n_p] > 0)
    loan_amount = np.where(borrower, np.round(_lognormal(rng, 4500, 0.6, n_p), 2), 0.0)
    loan_day = rng.integers(1, 29, n_p)
    ent_borrower = rng.random(n_e) < 0.2
    ent_loan_amount = np.where(ent_borrower, np.round(_lognormal(rng, 60_000, 1.0, n_e), 2), 0.0)
    ent_loan_day = rng.integers(1, 29, n_e)
    investor = (rng.random(n_p) < np.where(age[:n_p] >= 35, 0.16, 0.04)) & (person_weight[:n_p] > 0)
    foreign_tie = np.where(rng.random(n_p) < 0.02, n_pers + n_e + n_ex + rng.integers(0, n_f, n_p), -1)
    merchant_weight = np.where(retail, _lognormal(rng, 1.0, 1.2, n_ents), 0.0)
    merchant_weight[domestic_n:] = 0.0
    biller_weight = np.where(np.isin(letters, _BILLERS) & ~individual, ent_weight, 0.0)
    biller_weight[n_e : n_e + 3] = ent_weight[n_e : n_e + 3].max() * 20  # the big utilities
    biller_weight[domestic_n:] = 0.0
    suppliers = n_pers + rng.choice(domestic_n, (n_e, 6), p=ent_weight[:domestic_n] / ent_weight[:domestic_n].sum())
    is_self = suppliers == n_pers + np.arange(n_e)[:, None]
    suppliers = np.where(is_self, n_pers + (suppliers - n_pers + 1) % domestic_n, suppliers)
    trader = np.isin(letters[:n_e], ("C", "F")) & ~individual[:n_e] & (rng.random(n_e) < 0.2)
    trade_partner = np.where(trader, n_pers + n_e + n_ex + rng.integers(0, n_f, n_e), -1)
    cash_business = retail[:n_e] & (individual[:n_e] | (rng.random(n_e) < 0.3))

    internal0 = n_pers + n_ents + n_sec
    branch_accounts = np.arange(internal0, internal0 + n_reg)
    secondary = np.full(n_p, -1, dtype=np.int64)
    usable = np.ones(n_sec, dtype=bool)
    usable[sec_closed] = False
    secondary[sec_owner[usable]] = n_pers + n_ents + np.flatnonzero(usable)
    return Population(
        cal=cal, banks=banks, bank_country=bank_country, parties=parties, accounts=accounts,
        account_ids=account_ids, acc_party=acc_party.astype(np.int32), acc_bank=acc_bank, acc_kind=acc_kind,
        acc_own=own, acc_currency=acc_currency, licit_from=licit_from, licit_until=licit_until,
        n_own_persons=n_p, n_ext_persons=n_px, n_own_ents=n_e, n_ext_ents=n_ex, n_foreign=n_f, secondary=secondary,
        branch_accounts=branch_accounts,
        branch_province=np.array([int(r.code[:2]) for r in region_list]),
        loan_account=internal0 + n_reg, interest_account=internal0 + n_reg + 1, wmp_account=internal0 + n_reg + 2,
        person_weight=person_weight, person_branch=branch_accounts[home[:n_p]], person_birth_year=birth_year,
        contacts=contacts, employer=employer, salary=salary, loan_amount=loan_amount, loan_day=loan_day,
        investor=investor, foreign_tie=foreign_tie, dormant=dormant, ent_letter=letters, ent_weight=ent_weight,
        ent_individual=individual, payday=payday, pay_hour=pay_hour, merchant_weight=merchant_weight,
        biller_weight=biller_weight, suppliers=suppliers, trade_partner=trade_partner,
        cash_business=cash_business, ent_branch=branch_accounts[ent_region[:n_e]],
        ent_loan_amount=ent_loan_amount, ent_loan_day=ent_loan_day,
    )
