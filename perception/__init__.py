"""liquid-perception: model assembly, training, streaming, evaluation and the command line."""
