"""Synthesis with a trained model: load a model folder, Syn_MR on slices and volumes, predict for a new CT."""
