#!/usr/bin/env python3
"""Build an ImageNet-labelled evaluation folder from the project's real photos: OUT/<ImageNet label>/<file>.

Two sources, neither committed as a folder of this shape:

- the six golden photos of tests/data/photos (their `label` column in expected.tsv; the cat photo, whose
  top-1 moves between three cat classes, is filed under `tabby` as that column says);
- the photos of the 5-class photo set (scripts/data/make_photoset.py, Tux Paint stamps and GCompris scenes)
  whose subject is one ImageNet-1k class: chosen by hand from their file names (species-level names
  only, e.g. a "penguin" that may not be a king penguin, a "mouse" (ImageNet's is the computer mouse)
  or a "heron" of a species ImageNet lacks are left out). `PHOTOSET` lists them with their WordNet ids.

    python scripts/data/make_photoset.py --source /tmp/debs /tmp/photoset     # see docs/data.md
    python scripts/data/make_imagenet_photos.py --photoset /tmp/photoset build/imagenet-photos
    edgerec evaluate build/imagenet-photos --robustness
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from edge.core.model import Model

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "data" / "photos"

PHOTOSET = {  # file stem in the photo set -> WordNet id of its ImageNet-1k class
    "gc_erase_toucan": "n01843383", "gc_explore_world_animals_animals_scarlet_macaw": "n01818515",
    "tux_ostrich": "n01518878", "tux_peacock": "n01806143", "tux_pelican": "n02051845",
    "tux_pink_flamingo": "n02007558", "tux_hen": "n01514859", "tux_drake": "n01847000", "tux_magpie": "n01582220",
    "tux_vulture": "n01616318", "gc_erase_spoonbills": "n02006656", "tux_gander": "n01855672",
    "tux_rooster": "n01514668",
    "tux_lionfish": "n02643566", "tux_clownfish": "n02607072",
    "gc_erase_cheetah": "n02130308", "gc_erase_gibbon": "n02483362", "gc_erase_gorilla": "n02480855",
    "tux_apes_gorilla": "n02480855", "gc_erase_macaque": "n02487347", "gc_erase_nubian_ibex": "n02417914",
    "gc_erase_red_panda": "n02509815", "gc_explore_world_animals_animals_panda": "n02510455",
    "gc_explore_world_animals_animals_bison": "n02410509", "tux_bovines_bison": "n02410509",
    "gc_explore_world_animals_animals_jaguar": "n02128925", "gc_explore_world_animals_animals_koala": "n01882714",
    "gc_explore_world_animals_animals_polar_bear": "n02134084", "tux_apes_chimp": "n02481823",
    "tux_aquatic_otter": "n02444819", "tux_aquatic_sea_lion": "n02077923", "tux_badger": "n02447366",
    "tux_bovines_ram": "n02412080", "tux_camel_dromedary": "n02437312", "tux_cats_lion": "n02129165",
    "tux_cats_lion-2": "n02129165", "tux_cats_tiger": "n02129604", "tux_cats_tiger_sumatran": "n02129604",
    "tux_dogs_dingo": "n02115641", "tux_equines_zebra": "n02391049", "tux_hippopotamus": "n02398521",
    "tux_pig": "n02395406", "tux_pig_golden": "n02395406", "tux_pig_golden2": "n02395406",
    "gc_explore_farm_animals_animals_pig": "n02395406", "tux_rodents_beaver": "n02363005",
    "tux_rodents_marmot": "n02361337", "gc_explore_farm_animals_animals_cow": "n02403003",
    "tux_bovines_cow": "n02403003", "tux_wildboar": "n02396427", "gc_erase_meerkats": "n02138441",
    "gc_erase_long_nosed_monkey": "n02489166",
    "tux_hammer": "n03481172", **{f"gc_categorization_images_tools_hammer{i}": "n03481172" for i in range(1, 10)},
    "gc_categorization_images_tools_screwDriver": "n04154565",
    **{f"gc_categorization_images_tools_screwDriver{i}": "n04154565" for i in range(1, 4)},
    "tux_paintbrush_large": "n03876231",
    "gc_categorization_images_monuments_arcDeTriomphe": "n04486054",
    "gc_categorization_images_monuments_IndiaGate": "n04486054", "gc_explore_monuments_india_greatStupa": "n04346328",
    "gc_explore_monuments_france_pontduGard": "n04532670",
    "gc_explore_monuments_germany_neuschwansteinCastle": "n02980441",
    "gc_explore_monuments_france_reimsCathedral": "n03028079",
    "gc_explore_monuments_germany_wormsCathedral": "n03028079",
    "gc_categorization_images_monuments_zimniPalace": "n03877845",
    "gc_explore_monuments_india_mysorePalace": "n03877845",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    parser.add_argument("--photoset", type=Path, default=None, help="the folder scripts/data/make_photoset.py wrote")
    args = parser.parse_args(argv)
    if args.out.exists():
        sys.exit(f"make_imagenet_photos: {args.out} exists; choose a new folder")
    info = Model.load(None, "cpu").info
    label_of = dict(zip(info.label_ids or [], info.labels))
    with open(GOLDEN / "expected.tsv", newline="") as f:
        chosen = [(GOLDEN / row["file"], row["wnid"]) for row in csv.DictReader(f, delimiter="\t")]
    if args.photoset is not None:
        found = {p.stem: p for p in args.photoset.rglob("*") if p.stem in PHOTOSET}
        missing = sorted(set(PHOTOSET) - set(found))
        if missing:
            sys.exit(f"make_imagenet_photos: {len(missing)} photos missing from {args.photoset}: {', '.join(missing)}")
        chosen += [(found[stem], wnid) for stem, wnid in sorted(PHOTOSET.items())]
    for path, wnid in chosen:
        folder = args.out / label_of[wnid]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    print(f"wrote {len(chosen)} photos in {len({w for _, w in chosen})} ImageNet classes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
