# References for small multi-term LMMs (nested, crossed, a vector term beside a scalar one),
# ML and REML: writes tests/reference/small_lmm.json.
#   Rscript benchmarks/r/reference_small_lmm.R
suppressMessages({library(lme4); library(jsonlite)})
oats <- nlme::Oats
oats$Block <- factor(oats$Block, ordered = FALSE)
sal <- glmmTMB::Salamanders
cases <- list(
  oats_nested = list(data = "Oats", frame = oats, formula = "yield ~ nitro + (1 | Block/Variety)"),
  oats_vector = list(data = "Oats", frame = oats, formula = "yield ~ nitro + (nitro | Block) + (1 | Block:Variety)"),
  salamanders_crossed = list(data = "Salamanders", frame = sal, formula = "count ~ mined + cover + (1 | site) + (1 | spp)")
)
out <- list()
for (name in names(cases)) {
  cs <- cases[[name]]
  for (reml in c(FALSE, TRUE)) {
    fm <- lmer(as.formula(cs$formula), cs$frame, REML = reml,
               control = lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12)))
    out[[paste0(name, if (reml) "_reml" else "_ml")]] <- list(
      data = cs$data, formula = cs$formula, REML = reml,
      criterion = unname(if (reml) REMLcrit(fm) else deviance(fm)),
      fixef = as.list(fixef(fm)), se = as.list(sqrt(diag(as.matrix(vcov(fm))))),
      theta = unname(getME(fm, "theta")), sigma = sigma(fm))
  }
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = 12, pretty = TRUE), "tests/reference/small_lmm.json")
