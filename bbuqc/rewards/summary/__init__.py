"""Summary rewards: parsing, facts, the shared per-sample context, scoring."""
