"""Vocabularies for synthetic parties: surnames, given names, company names, streets, industries.

Name matching, screening and de-duplication are only tested honestly on names
distributed like real ones, so surnames follow their measured shares (the
top 100 cover ~85 % of the population) and given names draw from the
characters actually common in each gender.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Surnames with their share of the population in per cent (2020 census rankings, rounded);
#: the long tail is folded into the listed ones by normalisation.
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.12), ("李", 7.00), ("张", 6.74), ("刘", 5.10), ("陈", 4.61), ("杨", 3.22),
    ("黄", 2.45), ("赵", 2.29), ("吴", 2.05), ("周", 1.97), ("徐", 1.60), ("孙", 1.53),
    ("马", 1.47), ("朱", 1.32), ("胡", 1.31), ("郭", 1.18), ("何", 1.17), ("林", 1.13),
    ("高", 1.12), ("罗", 1.07), ("郑", 0.99), ("梁", 0.96), ("谢", 0.82), ("宋", 0.77),
    ("唐", 0.76), ("许", 0.73), ("韩", 0.72), ("邓", 0.71), ("冯", 0.70), ("曹", 0.66),
    ("彭", 0.65), ("曾", 0.64), ("肖", 0.63), ("田", 0.61), ("董", 0.59), ("潘", 0.55),
    ("袁", 0.54), ("蔡", 0.52), ("蒋", 0.52), ("余", 0.52), ("于", 0.51), ("杜", 0.50),
    ("叶", 0.49), ("程", 0.47), ("魏", 0.46), ("苏", 0.46), ("吕", 0.45), ("丁", 0.44),
    ("任", 0.43), ("卢", 0.42), ("姚", 0.41), ("沈", 0.41), ("钟", 0.40), ("姜", 0.40),
    ("崔", 0.39), ("谭", 0.38), ("陆", 0.37), ("范", 0.35), ("汪", 0.35), ("廖", 0.34),
    ("石", 0.34), ("金", 0.33), ("韦", 0.33), ("贾", 0.32), ("夏", 0.31), ("付", 0.31),
    ("方", 0.30), ("邹", 0.29), ("熊", 0.29), ("白", 0.29), ("孟", 0.28), ("秦", 0.28),
    ("邱", 0.28), ("侯", 0.27), ("江", 0.27), ("尹", 0.26), ("薛", 0.26), ("闫", 0.25),
    ("段", 0.24), ("雷", 0.24), ("龙", 0.23), ("黎", 0.23), ("史", 0.22), ("陶", 0.22),
    ("贺", 0.22), ("毛", 0.21), ("郝", 0.21), ("顾", 0.21), ("龚", 0.20), ("邵", 0.20),
    ("万", 0.20), ("覃", 0.19), ("武", 0.19), ("钱", 0.19), ("戴", 0.18), ("严", 0.18),
    ("莫", 0.17), ("孔", 0.17), ("向", 0.17), ("常", 0.16), ("欧阳", 0.05), ("上官", 0.01),
    ("司马", 0.01), ("诸葛", 0.01),
)

#: Characters common in given names, by gender; a few are shared on purpose (欣, 宇, 文…).
GIVEN_M = tuple("伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林建国峰志文博子轩睿泽晨阳"
                "然昊天一航毅成荣海东亮晓坤永")
GIVEN_F = tuple("芳娜敏静丽艳娟霞秀玲桂英丹萍红燕琳雪婷慧莉倩颖洁佳怡欣悦梓涵诗雨萱可馨晴思琪月玉兰梅凤晓文宇瑶")

#: GB/T 4754-2017 sections with the share of registered enterprises that fall in each (rounded).
INDUSTRIES: tuple[tuple[str, float], ...] = (
    ("A 农、林、牧、渔业", 2.0), ("B 采矿业", 0.5), ("C 制造业", 15.0),
    ("D 电力、热力、燃气及水生产和供应业", 0.6), ("E 建筑业", 6.0), ("F 批发和零售业", 30.0),
    ("G 交通运输、仓储和邮政业", 4.5), ("H 住宿和餐饮业", 7.0),
    ("I 信息传输、软件和信息技术服务业", 7.0), ("J 金融业", 0.6), ("K 房地产业", 3.0),
    ("L 租赁和商务服务业", 10.0), ("M 科学研究和技术服务业", 6.0),
    ("N 水利、环境和公共设施管理业", 0.6), ("O 居民服务、修理和其他服务业", 3.5),
    ("P 教育", 1.0), ("Q 卫生和社会工作", 1.0), ("R 文化、体育和娱乐业", 2.0),
)

#: Words a company of each section puts after its trade name (杭州恒达 + 贸易 + 有限公司).
INDUSTRY_WORDS: dict[str, tuple[str, ...]] = {
    "A": ("农业发展", "生态农业", "种养殖"), "B": ("矿业", "石材"),
    "C": ("实业", "机械制造", "电子科技", "服饰", "食品"),
    "D": ("供电", "燃气", "水务"), "E": ("建筑工程", "建设", "装饰工程"), "F": ("贸易", "商贸", "电子商务", "供应链"),
    "G": ("物流", "运输", "供应链管理"), "H": ("餐饮管理", "酒店管理"), "I": ("网络科技", "信息技术", "软件", "通信"),
    "J": ("融资担保", "金融信息服务"), "K": ("房地产开发", "置业"),
    "L": ("投资咨询", "企业管理", "商务服务", "投资管理"),
    "M": ("技术服务", "工程设计", "检测"), "N": ("环保科技", "环境工程"), "O": ("家政服务", "维修服务"),
    "P": ("教育咨询", "培训"), "Q": ("医疗管理", "健康管理"), "R": ("文化传媒", "体育发展", "影视"),
}

#: What an individual business (个体工商户) of each section calls itself (西湖区鑫源 + 便利店).
SHOP_WORDS: dict[str, tuple[str, ...]] = {
    "F": ("便利店", "商行", "超市", "五金店", "水果店", "烟酒店"), "H": ("餐馆", "面馆", "火锅店", "小吃店"),
    "O": ("理发店", "洗衣店", "家电维修部"), "R": ("书店", "台球室"), "Q": ("诊所",), "P": ("培训部",),
}

#: Characters of trade names (字号); two are drawn per company.
TRADE_CHARS = tuple("恒达鑫盛华泰隆瑞祥宏源兴通诚信安联创智德富嘉汇金海天正宇丰顺新明远博康润中永广鼎")

#: Common street names; every Chinese city has most of them.
ROADS = (
    "人民路", "解放路", "中山路", "建设路", "和平路", "新华路", "长江路", "文化路", "胜利路", "朝阳路",
    "青年路", "东风路", "延安路", "北京路", "南京路", "黄河路", "幸福路", "光明路", "工业大道", "科技路",
    "滨江路", "学院路", "健康路", "花园路", "迎宾大道", "世纪大道", "振兴路", "团结路", "公园路", "环城路",
)

#: Names of foreign counterparties, by ISO 3166 country code.
FOREIGN_NAMES: dict[str, tuple[str, ...]] = {
    "HK": ("PACIFIC RIM TRADING LIMITED", "GOLDEN HARBOUR HOLDINGS LIMITED", "VICTORIA BAY LOGISTICS LIMITED",
           "EASTERN STAR INTERNATIONAL LIMITED", "KOWLOON SUPPLY CHAIN LIMITED"),
    "US": ("BLUE RIVER IMPORTS INC", "SUMMIT COMPONENTS LLC", "WESTFIELD UNIVERSITY", "NORTHGATE MACHINERY CORP"),
    "DE": ("RHEINTAL MASCHINENBAU GMBH", "NORDHAFEN HANDELS GMBH", "SCHWARZWALD OPTIK AG"),
    "FR": ("SOCIETE LYONNAISE DE NEGOCE SA", "ATELIERS DE LA LOIRE SARL"),
    "SG": ("MERLION COMMODITIES PTE LTD", "STRAITS ELECTRONICS PTE LTD"),
}


def _take(values: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values, type=pa.string()), pa.array(idx))


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate string arrays (and constants) element-wise, in Arrow, without Python loops."""
    return pc.binary_join_element_wise(*parts, "")


def person_names(rng: np.random.Generator, male: np.ndarray) -> pa.Array:
    """Full names: a surname by real frequency, then one (20 %) or two given-name characters."""
    n = len(male)
    s_names = [s for s, _ in SURNAMES]
    w = np.array([f for _, f in SURNAMES])
    surname = _take(s_names, rng.choice(len(s_names), n, p=w / w.sum()))
    pool = list(GIVEN_M) + list(GIVEN_F)
    nm = len(GIVEN_M)

    def char() -> np.ndarray:
        return np.where(male, rng.integers(0, nm, n), nm + rng.integers(0, len(GIVEN_F), n))

    first = _take(pool, char())
    second = pc.if_else(pa.array(rng.random(n) < 0.8), _take(pool, char()), "")
    return join(surname, first, second)


def company_names(
    rng: np.random.Generator, city_short: pa.Array, district: pa.Array, letters: np.ndarray, individual: np.ndarray
) -> pa.Array:
    """Company names in the registration pattern 行政区划 + 字号 + 行业 + 组织形式.

    Individual businesses are named after their district and shop type instead.
    """
    n = len(letters)
    trade = join(_take(TRADE_CHARS, rng.integers(0, len(TRADE_CHARS), n)),
                 _take(TRADE_CHARS, rng.integers(0, len(TRADE_CHARS), n)))
    word_list: list[str] = []
    word_idx = np.zeros(n, dtype=np.int64)
    shop_list: list[str] = []
    shop_idx = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for letter, words in INDUSTRY_WORDS.items():
        m = letters == letter
        word_idx[m] = len(word_list) + (u[m] * len(words)).astype(np.int64)
        word_list.extend(words)
        shops = SHOP_WORDS.get(letter, ("经营部",))
        shop_idx[m] = len(shop_list) + (u[m] * len(shops)).astype(np.int64)
        shop_list.extend(shops)
    forms = ("有限公司", "有限公司", "有限公司", "有限责任公司", "股份有限公司")
    company = join(city_short, trade, _take(word_list, word_idx), _take(forms, rng.integers(0, len(forms), n)))
    shop = join(district, trade, _take(shop_list, shop_idx))
    return pc.if_else(pa.array(individual), shop, company)


def addresses(
    rng: np.random.Generator, province: pa.Array, city: pa.Array, district: pa.Array, *, residential: bool
) -> pa.Array:
    """Street addresses: 省 市 区 路 号, then 栋/单元/室 for homes or 层/室 for offices.

    Municipalities (北京市…) and cities without districts (东莞市) are written once, as on a
    real envelope.
    """
    n = len(province)
    city_part = pc.if_else(pc.equal(province, city), "", city)
    district = pc.if_else(pc.equal(district, city), "", district)
    road = _take(ROADS, rng.integers(0, len(ROADS), n))
    number = pc.cast(pa.array(rng.integers(1, 999, n)), pa.string())
    if residential:
        tail = join(pc.cast(pa.array(rng.integers(1, 30, n)), pa.string()), "栋",
                    pc.cast(pa.array(rng.integers(1, 6, n)), pa.string()), "单元",
                    pc.cast(pa.array(rng.integers(1, 33, n) * 100 + rng.integers(1, 5, n)), pa.string()), "室")
    else:
        tail = join(pc.cast(pa.array(rng.integers(1, 28, n)), pa.string()), "层",
                    pc.cast(pa.array(rng.integers(1, 30, n)), pa.string()), "室")
    return join(province, city_part, district, road, number, "号", tail)
