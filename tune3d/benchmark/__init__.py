"""``tune3d benchmark``: suites of probe runs (the FiT3D paper's tables or a YAML), reported beside the
paper's numbers (``paper_numbers.csv``)."""

from tune3d.benchmark.paper import paper_value, paper_values
from tune3d.benchmark.run import SuiteSettings, run_suite
from tune3d.benchmark.suite import Cell, Suite, load_suite, named_suites

__all__ = [
    "Cell",
    "Suite",
    "SuiteSettings",
    "load_suite",
    "named_suites",
    "paper_value",
    "paper_values",
    "run_suite",
]
