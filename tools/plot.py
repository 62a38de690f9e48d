#!/usr/bin/env python3
"""`python -m longcrawl.plot` from the source tree, for the commands in README.md and tools/demo.sh."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from longcrawl.plot import main  # noqa: E402

main()
