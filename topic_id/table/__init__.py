"""The whole table as steps: the planner (steps and their dependencies) and the launchers that run them."""
