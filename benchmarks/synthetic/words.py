"""In-repo word lists for the fictitious world (no Faker, no dates relative to today)."""

FIRST = """Orla Bram Mira Tobin Ena Hugo Sela Iver Rhea Pavel Lina Corin Dagny Esko Fenna Gideon Halla
Ilse Jarek Kaia Lorcan Maren Nils Odile Piers Quilla Roran Saga Tamsin Ulric Vesna Wendel Xenia Yorick
Zelda Alvar Brisa Caspar Delphine Emeric Freya Gunnar Hester Ingmar Juno Kasimir Liesel Magnus Noor
Osric Petra Rune Sorcha Teodor Una Viggo Wren Ysolde Aurel Bettany""".split()

LAST = """Venn Quist Solt Achter Dross Brand Voigt Kell Lund Orm Harrow Fenwick Marrow Strand Teller
Ashby Corvin Dunmore Elling Farrant Gorse Hollin Ibsley Jessop Kestrel Larkin Mossop Nettle Oakes
Pelham Quarry Rook Sallow Thorne Underwood Vance Wickham Yarrow Zeller Ambry Bexley Calloway Dray
Everly Frome Gaunt Hythe Ivory Juniper Kerridge""".split()

CITIES = """Tarsk Pell Varo Moss Skarde Dunmere Halvik Oreby Brennock Calder Estmoor Frisa Glenholt
Harrowgate Istra Jorvik Kelso Lowen Marlow Northam Ostend Penrith Quenby Rothes Selby Tavor Ulven
Vardo Wexham Yoren""".split()

PROFESSIONS = ("glassblower|clockmaker|ferry pilot|cartographer|beekeeper|luthier|stonemason|botanist|"
               "archivist|bookbinder|astronomer|cooper|falconer|perfumer|puppeteer|surveyor|tailor|"
               "violinist|weaver|winemaker").split("|")

COMPANY_A = """Amber Copper Lumen Silver Harbor Northwind Granite Willow Cobalt Meridian Juniper Falcon
Beacon Orchard Summit""".split()
COMPANY_B = """Works Foundry Bakery Press Guild Observatory Atelier Mills Trading Company Studio
Laboratory Brewery Shipyard Archive""".split()

SCHOOLS = """Halden Institute|Norrin College|Pell Academy|Varo Polytechnic|Skarde University|Estmoor
Conservatory|Calder School of Arts|Ulven Technical College|Marlow University|Frisa Royal Academy|Lowen
College|Tavor Institute of Science""".replace("\n", " ").split("|")

AWARDS = """Kessel Prize|Amber Medal|Halvik Award|Silver Quill|Ostrom Medal|Lantern Prize|Corvid
Award|Meridian Medal|Brightwater Prize|Iron Compass Award""".replace("\n", " ").split("|")

WORK_ADJ = """Salt Winter Hollow Silent Copper Northern Broken Quiet Amber Distant Lost Golden""".split()
WORK_NOUN = """Road Harbour Lantern Orchard Garden Bridge Tower River Mirror Compass Meadow Clock""".split()

HOBBIES = """chess|sailing|birdwatching|fencing|pottery|rowing|falconry|origami|archery|beekeeping
|kite flying|cave diving""".replace("\n", "").split("|")
