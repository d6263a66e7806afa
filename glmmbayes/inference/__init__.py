"""Inference after the fit: likelihood-ratio tests (`anova`, `lrt`), confidence intervals
(Wald, profile, bootstrap), ζ profiles and ArviZ InferenceData for every method."""
