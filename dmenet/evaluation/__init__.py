"""The paper's evaluation protocols (DESIGN §7) in Python: metrics, benchmark datasets, scoring any
method's maps, reports and plots. `evaluate.py` is the command-line front end."""
