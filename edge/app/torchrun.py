"""`torchrun --nproc_per_node N -m edge.app.torchrun DATA --out OUT [...]`: `edgerec train` in each of several
processes (training.distributed). An entry module of its own, so that training never imports the command line."""

import sys

from edge.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
