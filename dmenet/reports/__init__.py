"""Self-contained HTML reports: a method comparison (evaluate.py --compare) and a batch of photos (infer.py --report)."""
