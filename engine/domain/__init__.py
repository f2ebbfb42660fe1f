"""Domain values and pure rules: models, statuses, rules, the program-year calendar."""
