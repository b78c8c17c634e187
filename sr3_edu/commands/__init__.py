"""The command-line layer: one module per ``sr3-edu`` command, each with ``add_arguments(parser)`` and
``run(args) -> int``, and `flags`, the flags they share. The library modules they call take plain Python values and
never see argparse; `sr3_edu.cli` routes ``python -m sr3_edu COMMAND`` to these modules."""
