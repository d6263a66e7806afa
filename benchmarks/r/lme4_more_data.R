# lme4 fits of data sets beyond the reference suite (lme4, nlme, mlmRev, MASS and three simulated
# sets), for benchmarks/compare_more_data.py. Usage: Rscript benchmarks/r/lme4_more_data.R <dir>
# Writes <dir>/<data>.csv and <dir>/fits.json (formula, family, link, nAGQ, logLik, fixef, se, theta,
# factor levels in R's order, the median of five timed fits).
suppressMessages({library(lme4); library(jsonlite); library(mlmRev); library(MASS)})
dir <- commandArgs(trailingOnly = TRUE)[1]
dir.create(dir, showWarnings = FALSE)
out <- list()
add <- function(name, data, formula, family = NULL, nAGQ = 1, key = name) {
  write.csv(data, file.path(dir, paste0(name, ".csv")), row.names = FALSE)
  fit <- function() if (is.null(family)) lmer(as.formula(formula), data = data, REML = FALSE)
                    else glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)
  f <- fit()
  secs <- median(sapply(1:5, function(i) system.time(suppressWarnings(fit()))[["elapsed"]]))
  lv <- lapply(Filter(is.factor, data), function(x) list(levels = levels(x), ordered = is.ordered(x)))
  out[[key]] <<- list(data = name, formula = formula,
                      family = if (is.null(family)) "gaussian" else family$family,
                      link = if (is.null(family)) "identity" else family$link, nAGQ = nAGQ,
                      logLik = as.numeric(logLik(f)), fixef = as.list(fixef(f)),
                      se = as.numeric(sqrt(diag(vcov(f)))), theta = as.numeric(getME(f, "theta")), levels = lv,
                      median_s = secs)
}
add("Dyestuff", Dyestuff, "Yield ~ 1 + (1|Batch)")
add("Penicillin", Penicillin, "diameter ~ 1 + (1|plate) + (1|sample)")
add("Pastes", Pastes, "strength ~ 1 + (1|batch/cask)")
add("Orthodont", nlme::Orthodont, "distance ~ age + Sex + (age|Subject)")
add("Machines", nlme::Machines, "score ~ Machine + (1|Worker) + (1|Worker:Machine)")
add("Exam", Exam[, c("normexam", "standLRT", "school")], "normexam ~ standLRT + (standLRT|school)")
add("Hsb82", Hsb82[, c("mAch", "cses", "meanses", "sector", "school")], "mAch ~ meanses*cses + sector*cses + (cses|school)")
add("cake", cake, "angle ~ recipe * temperature + (1|recipe:replicate)")
add("ScotsSec", ScotsSec[, c("attain", "verbal", "sex", "primary", "second")], "attain ~ verbal + sex + (1|primary) + (1|second)")
add("Arabidopsis", Arabidopsis, "total.fruits ~ nutrient + amd + rack + status + (1|popu) + (1|gen)", poisson())
add("Mmmec", Mmmec, "deaths ~ uvb + offset(log(expected)) + (1|region)", poisson())
add("Mmmec", Mmmec, "deaths ~ uvb + offset(log(expected)) + (1|region)", poisson(), nAGQ = 0, key = "Mmmec_nAGQ0")
add("Mmmec", Mmmec, "deaths ~ uvb + offset(log(expected)) + (1|region)", poisson(), nAGQ = 9, key = "Mmmec_nAGQ9")
add("epil", epil, "y ~ trt + lbase + lage + V4 + (1|subject)", poisson())
add("epil", epil, "y ~ trt + lbase + lage + V4 + (1|subject)", poisson(), nAGQ = 15, key = "epil_nAGQ15")
add("cbpp", cbpp, "cbind(incidence, size - incidence) ~ period + (1|herd)", binomial(link = "probit"), key = "cbpp_probit")
set.seed(1)
add("sim_binary", data.frame(id = factor(rep(1:60, each = 5)), t = rep(0:4, 60),
    y = rbinom(300, 1, plogis(-1 + rep(rnorm(60, 0, 2), each = 5) - 0.3 * rep(0:4, 60)))), "y ~ t + (1|id)", binomial())
set.seed(2)
n <- 400; g <- factor(sample(1:40, n, TRUE)); x <- rnorm(n)
eta <- 0.5 + 0.4 * x + rnorm(40, 0, 0.5)[g] + rnorm(40, 0, 0.3)[g] * x
add("sim_binary_slope", data.frame(y = rbinom(n, 1, plogis(eta)), x = x, g = g), "y ~ x + (x|g)", binomial())
add("sim_poisson_slope", data.frame(y = rpois(n, exp(eta)), x = x, g = g), "y ~ x + (x|g)", poisson())
write(toJSON(out, auto_unbox = TRUE, digits = 12), file.path(dir, "fits.json"))
