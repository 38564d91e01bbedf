"""Building the training data: the offline synonym rewrite and the LLM rewrite of a share of the rows."""
