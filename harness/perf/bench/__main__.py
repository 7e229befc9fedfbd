"""``python -m harness.perf.bench``: the same command as ``nlt-bench``."""

from harness.perf.bench import main

if __name__ == "__main__":
    main()
