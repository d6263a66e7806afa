# Standard errors of the fixed effects from glmmTMB (the Hessian of the Laplace marginal
# likelihood by automatic differentiation) beside lme4's (a finite-difference Hessian), written to
# tests/reference/glmmtmb_se.json. lme4's glmer standard errors can differ from the exact Laplace
# Hessian by about 1 % (cbpp: 0.2312 vs 0.2325 for the intercept); the tests compare with glmmTMB.
#
# Usage (from the repository root): Rscript benchmarks/r/reference_glmmtmb_se.R
# Needs: lme4, glmmTMB, mlmRev, jsonlite.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite); library(mlmRev)})

cases <- list(
  cbpp = list(formula = cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp,
              family = binomial, data_name = "cbpp"),
  contraception_district = list(formula = use ~ age + I(age^2) + urban + livch + (1 | district),
                                data = Contraception, family = binomial, data_name = "Contraception"),
  grouseticks_poisson = list(formula = TICKS ~ YEAR + cHEIGHT + (1 | BROOD), data = grouseticks,
                             family = poisson, data_name = "grouseticks")
)
grouseticks$cHEIGHT <- grouseticks$HEIGHT - mean(grouseticks$HEIGHT)
cases$grouseticks_poisson$data <- grouseticks

out <- list()
for (nm in names(cases)) {
  cs <- cases[[nm]]
  tmb <- glmmTMB(cs$formula, data = cs$data, family = cs$family)
  g <- glmer(cs$formula, data = cs$data, family = cs$family)
  out[[nm]] <- list(
    formula = paste(deparse(cs$formula, width.cutoff = 500), collapse = ""),
    family = cs$family()$family, data = cs$data_name,
    glmmTMB = list(fixef = as.list(fixef(tmb)$cond), se = as.list(sqrt(diag(vcov(tmb)$cond))),
                   logLik = as.numeric(logLik(tmb))),
    lme4 = list(fixef = as.list(fixef(g)), se = as.list(sqrt(diag(as.matrix(vcov(g))))),
                logLik = as.numeric(logLik(g))))
}
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     glmmTMB = as.character(packageVersion("glmmTMB")))
write_json(out, "tests/reference/glmmtmb_se.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)
