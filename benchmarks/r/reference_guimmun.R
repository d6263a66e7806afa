# guImmun (mlmRev): the data set shipped as glmmbayes/datasets/guImmun.csv.gz (its factor
# levels in R's order) and the lme4 / glmmTMB / MASS::glmmPQL reference
# tests/reference/guimmun_nested.json.
# Usage (from the repository root): Rscript benchmarks/r/reference_guimmun.R <dir for the csv>
suppressMessages({library(lme4); library(glmmTMB); library(mlmRev); library(jsonlite); library(MASS); library(nlme)})
args <- commandArgs(trailingOnly = TRUE)
data(guImmun)
d <- guImmun
write.csv(d, file.path(args[1], "guImmun.csv"), row.names = FALSE)
lv <- lapply(Filter(is.factor, d), levels)
write(toJSON(lv, auto_unbox = FALSE), file.path(args[1], "guImmun_levels.json"))
form <- immun ~ kid2p + mom25p + ord + ethn + momEd + husEd + momWork + rural + pcInd81 + (1 | mom) + (1 | comm)
timed <- function(f, reps = 3) {
  t <- numeric(reps)
  for (i in seq_len(reps)) t[i] <- system.time(r <- f())[["elapsed"]]
  list(r = r, median = median(t), min = min(t))
}
head_ranef <- function(re) lapply(re, function(x) {
  x <- x[1:5, , drop = FALSE]
  lapply(seq_len(nrow(x)), function(i) as.list(x[i, , drop = FALSE]))
})
lme4_block <- function(nagq) {
  ft <- timed(function() withCallingHandlers(glmer(form, d, binomial, nAGQ = nagq),
                                             warning = function(w) invokeRestart("muffleWarning")))
  m <- ft$r
  vc <- as.data.frame(VarCorr(m))
  list(fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       theta = as.list(getME(m, "theta")),
       varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i],
                                                          var2 = NULL, vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
       logLik = as.numeric(logLik(m)), deviance = deviance(m), AIC = AIC(m), BIC = BIC(m),
       nobs = nobs(m), ngrps = as.list(ngrps(m)), singular = isSingular(m),
       ranef_head = head_ranef(ranef(m)), median_s = ft$median, min_s = ft$min,
       messages = as.list(m@optinfo$conv$lme4$messages))
}
tm <- timed(function() glmmTMB(form, d, family = binomial))
mt <- tm$r
vct <- VarCorr(mt)$cond
pq <- timed(function() glmmPQL(immun ~ kid2p + mom25p + ord + ethn + momEd + husEd + momWork + rural + pcInd81,
                               random = ~ 1 | comm/mom, family = binomial, data = d, verbose = FALSE), reps = 1)
vp <- VarCorr(pq$r)
pql <- list(fixef = as.list(fixef(pq$r)), se = as.list(sqrt(diag(vcov(pq$r)))),
            sd = list(comm = as.numeric(vp[2, "StdDev"]), mom = as.numeric(vp[4, "StdDev"])),
            sigma = pq$r$sigma, median_s = pq$median)
out <- list(
  data = "guImmun", formula = paste(deparse(form, width.cutoff = 500), collapse = ""),
  family = "binomial", link = "logit",
  laplace = lme4_block(1), nagq0 = lme4_block(0), pql = pql,
  glmmtmb = list(fixef = as.list(fixef(mt)$cond), se = as.list(sqrt(diag(vcov(mt)$cond))),
                 varcorr = lapply(names(vct), function(g) list(grp = g, var1 = "(Intercept)", var2 = NULL,
                                                               sdcor = unname(attr(vct[[g]], "stddev")))),
                 ranef_head = head_ranef(ranef(mt)$cond),
                 logLik = as.numeric(logLik(mt)), median_s = tm$median)
)
write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE), "tests/reference/guimmun_nested.json")
