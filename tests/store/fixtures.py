"""Tiny datasets in the H&M and MovieLens layouts, written by the tests (never the real data)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

HM_ARTICLES = """article_id,product_code,prod_name,product_type_no,product_type_name,product_group_name,graphical_appearance_no,graphical_appearance_name,colour_group_code,colour_group_name,perceived_colour_value_id,perceived_colour_value_name,perceived_colour_master_id,perceived_colour_master_name,department_no,department_name,index_code,index_name,index_group_no,index_group_name,section_no,section_name,garment_group_no,garment_group_name,detail_desc
0108775015,108775,Strap top,253,Vest top,Garment Upper body,1010016,Solid,9,Black,4,Dark,5,Black,1676,Jersey Basic,A,Ladieswear,1,Ladieswear,16,Womens Everyday Basics,1002,Jersey Basic,Jersey top with narrow shoulder straps.
0108775044,108775,Strap top,253,Vest top,Garment Upper body,1010016,Solid,10,White,3,Light,9,White,1676,Jersey Basic,A,Ladieswear,1,Ladieswear,16,Womens Everyday Basics,1002,Jersey Basic,Jersey top with narrow shoulder straps.
0110065001,110065,OP T-shirt (Idro),306,Bra,Underwear,1010016,Solid,9,Black,4,Dark,5,Black,1339,Clean Lingerie,B,Lingeries/Tights,1,Ladieswear,61,Womens Lingerie,1017,"Under-, Nightwear","Microfibre T-shirt bra with underwired, moulded cups."
"""
HM_CUSTOMERS = """customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code
c1,1.0,1.0,ACTIVE,Regularly,68.0,p1
c2,,,ACTIVE,NONE,17.0,p2
"""
HM_TRANSACTIONS = """t_dat,customer_id,article_id,price,sales_channel_id
2018-09-20,c1,0108775015,0.0423,1
2018-09-20,c1,0108775015,0.0423,1
2018-09-21,c2,0110065001,0.0169,2
2018-09-22,c2,0108775044,0.0169,2
"""


def write_hm(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "articles.csv").write_text(HM_ARTICLES)
    (root / "customers.csv").write_text(HM_CUSTOMERS)
    (root / "transactions.csv").write_text(HM_TRANSACTIONS)
    for aid in ("0108775015", "0108775044"):  # the third article has no photo
        img = root / "images" / aid[:3] / f"{aid}.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 12), (10, 10, 10)).save(img)
    return root


def write_movielens(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    flags = ["0"] * 19
    comedy = list(flags)
    comedy[5] = "1"
    (root / "u.item").write_bytes(
        ("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(comedy) + "\n"
         "2|Caf\xe9 Film (1996)|01-Jan-1996||http://y|" + "|".join(flags) + "\n").encode("latin-1")
    )
    (root / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (root / "u.data").write_text("1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t891717742\n")
    (root / "posters").mkdir(exist_ok=True)
    Image.new("RGB", (8, 12), (200, 10, 10)).save(root / "posters" / "1.jpg")
    (root / "details.json").write_text('[{"movie_id": 1, "description": "Toys come alive.", "director": ["JL"]}]')
    return root
