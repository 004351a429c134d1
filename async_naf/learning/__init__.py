"""Stage 4, learning: replay buffer, agents (NAF, DDPG, Linear-NAF), the trainer -> policy weights (node: trainer)."""
