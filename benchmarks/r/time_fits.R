# Times lme4::glmer and glmmTMB on one data set, as called by benchmarks/run_benchmarks.py.
# Usage: Rscript time_fits.R <job.json> <out.json>
# job.json: {"csv": path, "levels": {column: [levels]}, "formula": ..., "family": ..., "link": ...,
#            "nAGQ": 1, "reps": 5, "glmmtmb": true, "REML": false}
# family nbinom2: lme4::glmer.nb and glmmTMB nbinom2; nbinom1 and GLMM REML: glmmTMB only.
suppressMessages({
  library(jsonlite)
  library(lme4)
  library(glmmTMB)
})
args <- commandArgs(trailingOnly = TRUE)
job <- fromJSON(args[1], simplifyVector = TRUE)
d <- read.csv(job$csv, stringsAsFactors = FALSE)
for (col in names(job$levels)) d[[col]] <- factor(as.character(d[[col]]), levels = job$levels[[col]])
nb <- job$family %in% c("nbinom2", "nbinom1")
fam <- if (nb) get(job$family)(link = job$link) else get(job$family)(link = job$link)
form <- as.formula(job$formula)
reml <- isTRUE(job$REML)
time_it <- function(f) {
  t <- numeric(job$reps)
  for (i in seq_len(job$reps)) t[i] <- system.time(r <- f())[["elapsed"]]
  list(median = median(t), min = min(t), result = r)
}
out <- list()
g <- NULL
if (job$family == "gaussian" && job$link == "identity") {
  g <- time_it(function() lmer(form, d, REML = reml))
} else if (job$family == "nbinom2") {
  g <- time_it(function() suppressWarnings(glmer.nb(form, d)))  # lme4's negative binomial (NB2)
} else if (!nb && !reml) {
  g <- time_it(function() suppressWarnings(glmer(form, d, family = fam, nAGQ = job$nAGQ)))
}
if (!is.null(g))
  out$lme4 <- list(median_s = g$median, min_s = g$min, logLik = as.numeric(logLik(g$result)),
                   fixef = as.list(fixef(g$result)))
if (isTRUE(job$glmmtmb) && job$nAGQ == 1) {
  tm <- time_it(function() suppressWarnings(glmmTMB(form, d, family = fam, REML = reml)))
  out$glmmtmb <- list(median_s = tm$median, min_s = tm$min, logLik = as.numeric(logLik(tm$result)),
                      fixef = as.list(fixef(tm$result)$cond))
}
write(toJSON(out, auto_unbox = TRUE, digits = NA), args[2])
