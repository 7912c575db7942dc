# The notebooks here are inputs of tests/test_sweep.py, not tests themselves:
# keep nbval (make unit-nbval collects .ipynb files under tests/) away from them.
collect_ignore_glob = ["*.ipynb"]
