"""``python -m sim``: the same command as ``tierline sim``."""

from sim.cli import command

if __name__ == "__main__":
    command(prog_name="python -m sim")
