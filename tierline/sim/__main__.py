"""``python -m tierline.sim``: the same command as ``tierline sim``."""

from tierline.sim.cli import command

if __name__ == "__main__":
    command(prog_name="python -m tierline.sim")
