"""Stage 3, collecting: policy steps -> transitions, rewards, episodes (node: collector)."""
