"""Stage 2, acting: joint states + door angle -> observation -> mu(x) + noise -> joint-velocity command
(node: policy). Never imports torch."""
