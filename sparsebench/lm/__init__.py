"""Language-model task helpers: loading a causal LM, windows of text, evaluation and timing."""
