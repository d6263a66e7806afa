# Non-logit links, Gamma / Gaussian-log GLMMs and negative binomial with an offset: lme4 and glmmTMB
# references written to tests/reference/ (one JSON per case; fields in tests/reference/README.md).
#
# Usage (from the repository root):
#   Rscript benchmarks/r/reference_families.R [--export=<dir>] [CASE ...]
# CASE is any of: contraception_probit contraception_cloglog verbagg_probit oats_gamma_log
#                 oats_gaussian_log cbpp_probit owls_nb            (all of them when none is given)
# --export=<dir> first writes the data sets this script adds to the package, as R exports them:
#   <dir>/Oats.csv, <dir>/Owls.csv (write.csv, row.names = FALSE) and <dir>/<name>_levels.json (R's
#   factor level order). They are shipped as glmmbayes/datasets/<name>.csv.gz (`gzip -9 -n`, the CSV
#   unchanged) with the levels under the data set's name in glmmbayes/datasets/levels.json.
#
# Every fit uses the data exactly as the package ships them: glmmbayes/datasets/<name>.csv.gz read
# back with the factor levels of levels.json; the script stops unless that copy equals the R package
# data (factor labels and level order identical, numbers within 1e-14).
#   Contraception: mlmRev::Contraception (response: the factor use, "Y" = success)
#   VerbAgg, cbpp: lme4 (response r2, "Y" = success)
#   Oats: nlme::Oats as a plain data.frame; Block (ordered in nlme) and Variety become unordered
#         factors with R's level order, factor(as.character(x), levels = levels(x)); nitro numeric
#   Owls: glmmTMB::Owls unchanged
# Timings: median (and min) wall seconds of 3 fits; a fit slower than 120 s is timed once.
# Needs: lme4, glmmTMB, nlme, mlmRev, jsonlite.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})

argv <- commandArgs(trailingOnly = TRUE)
export_dir <- sub("^--export=", "", grep("^--export=", argv, value = TRUE))
cases <- grep("^--", argv, value = TRUE, invert = TRUE)
ALL <- c("contraception_probit", "contraception_cloglog", "verbagg_probit", "oats_gamma_log",
         "oats_gaussian_log", "cbpp_probit", "owls_nb")
bad <- setdiff(cases, ALL)
if (length(bad)) stop("unknown case(s): ", paste(bad, collapse = ", "), "; cases: ", paste(ALL, collapse = " "))
if (!length(cases)) cases <- ALL
PKG <- "glmmbayes/datasets"
OUT <- "tests/reference"
if (!file.exists(file.path(PKG, "levels.json"))) stop("run from the repository root")
LONG_S <- 120  # a first fit slower than this is not repeated

# ------------------------------------------------------------------ data
plain <- function(d) {  # plain data.frame, ordered factors -> unordered with the same level order
  d <- as.data.frame(d)
  attributes(d) <- attributes(d)[c("names", "row.names", "class")]
  class(d) <- "data.frame"
  for (v in names(d)) if (is.factor(d[[v]])) d[[v]] <- factor(as.character(d[[v]]), levels = levels(d[[v]]))
  rownames(d) <- NULL
  d
}
r_data <- function(name) switch(name,
  Contraception = plain(mlmRev::Contraception),
  VerbAgg = plain(lme4::VerbAgg),
  cbpp = plain(lme4::cbpp),
  Oats = {
    o <- nlme::Oats
    data.frame(Block = factor(as.character(o$Block), levels = levels(o$Block)),
               Variety = factor(as.character(o$Variety), levels = levels(o$Variety)),
               nitro = as.numeric(o$nitro), yield = as.numeric(o$yield))
  },
  Owls = plain(glmmTMB::Owls))

if (length(export_dir)) {
  dir.create(export_dir, showWarnings = FALSE, recursive = TRUE)
  for (name in c("Oats", "Owls")) {
    d <- r_data(name)
    write.csv(d, file.path(export_dir, paste0(name, ".csv")), row.names = FALSE)
    lv <- lapply(Filter(is.factor, d), levels)
    write(toJSON(lv, auto_unbox = FALSE), file.path(export_dir, paste0(name, "_levels.json")))
    cat("exported ", name, ": ", nrow(d), " rows\n", sep = "")
  }
}

shipped <- function(name) {
  f <- file.path(PKG, paste0(name, ".csv.gz"))
  lv <- fromJSON(file.path(PKG, "levels.json"), simplifyVector = TRUE)[[name]]
  if (!file.exists(f) || is.null(lv)) stop(name, " is not shipped in ", PKG, " yet (see --export)")
  cc <- setNames(rep("character", length(lv)), names(lv))
  d <- read.csv(gzfile(f), colClasses = cc, na.strings = "NA", stringsAsFactors = FALSE)
  for (v in names(lv)) {
    stopifnot(all(d[[v]] %in% lv[[v]]))
    d[[v]] <- factor(d[[v]], levels = lv[[v]])
  }
  ref <- r_data(name)
  stopifnot(identical(names(d), names(ref)), nrow(d) == nrow(ref))
  for (v in names(ref)) {
    if (is.factor(ref[[v]])) {
      stopifnot(is.factor(d[[v]]), identical(levels(d[[v]]), levels(ref[[v]])),
                identical(as.character(d[[v]]), as.character(ref[[v]])))
    } else {
      stopifnot(isTRUE(all.equal(as.numeric(d[[v]]), as.numeric(ref[[v]]), tolerance = 1e-14)))
    }
  }
  d
}

# ------------------------------------------------------------------ fitting and summaries
fstr <- function(f) paste(deparse(f, width.cutoff = 500), collapse = " ")
cstr <- function(cl) paste(deparse(cl, width.cutoff = 500), collapse = " ")

# evaluate the call reps times with data d; warnings and messages of the first run are kept
fit_timed <- function(cl, d, reps = 3) {
  w <- character(); msg <- character(); t <- numeric(); fit <- NULL
  for (i in seq_len(reps)) {
    t0 <- proc.time()[["elapsed"]]
    r <- withCallingHandlers(eval(cl, list(d = d)),
      warning = function(x) { if (i == 1) w <<- c(w, conditionMessage(x)); invokeRestart("muffleWarning") },
      message = function(x) { if (i == 1) msg <<- c(msg, conditionMessage(x)); invokeRestart("muffleMessage") })
    t[i] <- proc.time()[["elapsed"]] - t0
    if (i == 1) fit <- r
    if (t[1] > LONG_S) break
  }
  list(fit = fit, call = cstr(cl), seconds = round(t, 3), median_s = round(median(t), 3),
       min_s = round(min(t), 3), warnings = as.list(unique(w)), messages = as.list(unique(msg)))
}

head_ranef <- function(re) lapply(re, function(x) {
  x <- x[seq_len(min(5, nrow(x))), , drop = FALSE]
  lapply(seq_len(nrow(x)), function(i) as.list(x[i, , drop = FALSE]))
})
vc_rows <- function(vc) lapply(seq_len(nrow(vc)), function(i)
  list(grp = vc$grp[i], var1 = vc$var1[i], var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
       vcov = vc$vcov[i], sdcor = vc$sdcor[i]))
run_info <- function(r) list(call = r$call, median_s = r$median_s, min_s = r$min_s, seconds = as.list(r$seconds),
                             warnings = r$warnings, messages = r$messages)

DISP <- list(
  Gamma = "Var(y) = sigma^2 mu^2 (sigma = coefficient of variation; glmmTMB: shape = 1/sigma^2)",
  gaussian = "Var(y) = sigma^2 (residual sd)",
  nbinom2 = "NB2 size theta: Var(y) = mu + mu^2/theta",
  nbinom1 = "NB1 phi: Var(y) = mu (1 + phi)")

lme4_block <- function(r) {
  m <- r$fit; ll <- logLik(m); fam <- family(m)$family
  isnb <- grepl("Negative Binomial", fam); glmm <- isGLMM(m)
  reml <- isLMM(m) && isREML(m)
  disp <- if (isnb) {
    list(parameter = "theta", definition = DISP$nbinom2, value = getME(m, "glmer.nb.theta"),
         source = 'getME(m, "glmer.nb.theta")', sigma_R = sigma(m))
  } else if (fam %in% c("Gamma", "gaussian")) {
    list(parameter = "sigma", definition = DISP[[fam]], value = sigma(m), source = "sigma(m)")
  } else NULL
  c(list(fitter = if (isnb) "lme4::glmer.nb" else if (glmm) "lme4::glmer" else "lme4::lmer",
         family = fam, link = family(m)$link,
         nAGQ = if (glmm) m@devcomp$dims[["nAGQ"]] else NULL, REML = reml,
         fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
         theta = as.list(getME(m, "theta")), varcorr = vc_rows(as.data.frame(VarCorr(m))),
         dispersion = disp,
         logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
         deviance = if (reml) NULL else deviance(m), REMLcrit = if (reml) REMLcrit(m) else NULL,
         AIC = AIC(m), BIC = BIC(m), nobs = nobs(m), ngrps = as.list(ngrps(m)), singular = isSingular(m),
         ranef_head = head_ranef(ranef(m)),
         convergence = list(lme4_messages = as.list(m@optinfo$conv$lme4$messages),
                            optimizer = m@optinfo$optimizer, optimizer_code = m@optinfo$conv$opt,
                            optimizer_warnings = as.list(m@optinfo$warnings))),
    run_info(r))
}

tmb_block <- function(r) {
  m <- r$fit; ll <- logLik(m); fam <- family(m)$family
  vc <- VarCorr(m)$cond; rows <- list()
  for (g in names(vc)) {
    s <- attr(vc[[g]], "stddev"); cr <- attr(vc[[g]], "correlation"); nm <- names(s)
    for (i in seq_along(s)) rows[[length(rows) + 1]] <- list(grp = g, var1 = nm[i], var2 = NULL,
                                                             vcov = unname(s[i]^2), sdcor = unname(s[i]))
    if (length(s) > 1) for (j in 1:(length(s) - 1)) for (i in (j + 1):length(s))
      rows[[length(rows) + 1]] <- list(grp = g, var1 = nm[j], var2 = nm[i],
                                       vcov = unname(cr[i, j] * s[i] * s[j]), sdcor = unname(cr[i, j]))
  }
  disp <- NULL
  if (fam %in% names(DISP)) {
    sf <- summary(m$sdr, "fixed"); bd <- sf[rownames(sf) == "betad", , drop = FALSE]
    disp <- list(parameter = switch(fam, nbinom2 = "theta", nbinom1 = "phi", "sigma"), definition = DISP[[fam]],
                 value = sigma(m), source = "sigma(m)", log_value = unname(bd[1, 1]), log_se = unname(bd[1, 2]),
                 log_note = paste(switch(fam, Gamma = "betad = log(shape) = -2 log(sigma)",
                                         gaussian = "betad = log(sigma^2)", nbinom2 = "betad = log(theta)",
                                         nbinom1 = "betad = log(phi)"),
                                  "as estimated by glmmTMB (log_value), with its sdreport SE (log_se)"))
  }
  c(list(fitter = "glmmTMB::glmmTMB", family = fam, link = family(m)$link, REML = isTRUE(m$modelInfo$REML),
         fixef = as.list(fixef(m)$cond), se = as.list(sqrt(diag(vcov(m)$cond))), varcorr = rows,
         dispersion = disp, logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
         AIC = AIC(m), BIC = BIC(m), nobs = nobs(m),
         ngrps = as.list(sapply(m$modelInfo$reTrms$cond$flist, nlevels)),
         ranef_head = head_ranef(ranef(m)$cond),
         convergence = list(code = m$fit$convergence, message = m$fit$message, pdHess = isTRUE(m$sdr$pdHess),
                            iterations = m$fit$iterations, optimizer = "nlminb")),
    run_info(r))
}

# Full binomial log-likelihood of a model with one scalar random intercept (the design of glmer fit m)
# at given fixed effects and sd, by adaptive numerical integration (stats::integrate) per group.
exact_binomial <- function(m, beta, sdb) {
  fam <- family(m); n <- m@resp$weights; y <- round(m@resp$y * n)
  eta0 <- as.vector(getME(m, "X") %*% beta) + m@resp$offset
  g <- getME(m, "flist")[[1]]
  per <- vapply(split(seq_along(y), g), function(i) {
    h <- function(b) vapply(b, function(bb) sum(dbinom(y[i], n[i], fam$linkinv(eta0[i] + bb), log = TRUE)) +
                              dnorm(bb, 0, sdb, log = TRUE), 0)
    mode <- optimize(h, c(-1, 1) * (10 * sdb + 5), maximum = TRUE, tol = 1e-10)$maximum
    h0 <- h(mode)
    h0 + log(integrate(function(b) exp(h(b) - h0), mode - 12 * sdb, mode + 12 * sdb, rel.tol = 1e-12,
                       subdivisions = 1000L)$value)
  }, 0)
  sum(per)
}
EXACT_METHOD <- paste("sum over groups of log of the integral of prod_i dbinom(y_i, n_i, linkinv(eta_i + b)) *",
                      "dnorm(b, 0, sd) db, by stats::integrate (rel.tol 1e-12) around the mode")
saturated <- function(m) { n <- m@resp$weights; y <- round(m@resp$y * n); sum(dbinom(y, n, y / n, log = TRUE)) }

# Each fitter's objective at its own and at the other's estimates (binomial, scalar terms only):
# tells an approximation difference (each at its own optimum) from an optimizer stopping short.
cross_check <- function(m, mt) {
  dfun <- update(m, devFunOnly = TRUE)  # lme4 Laplace: -2 logLik as a function of c(theta, beta)
  sd_t <- vapply(VarCorr(mt)$cond, function(x) unname(attr(x, "stddev")), 0)
  sd_l <- setNames(unname(getME(m, "theta")), names(getME(m, "cnms")))
  p_t <- mt$fit$par; p_l <- p_t
  p_l[names(p_l) == "beta"] <- fixef(m); p_l[names(p_l) == "theta"] <- log(sd_l[names(sd_t)])
  list(lme4_laplace_logLik = list(at_lme4_laplace = -dfun(c(sd_l, fixef(m))) / 2,
                                  at_glmmtmb = -dfun(c(sd_t[names(sd_l)], fixef(mt)$cond)) / 2),
       glmmtmb_logLik = list(at_glmmtmb = -as.numeric(mt$obj$fn(p_t)), at_lme4_laplace = -as.numeric(mt$obj$fn(p_l))),
       note = paste("lme4_laplace_logLik: lme4's Laplace objective (update(m, devFunOnly = TRUE)); glmmtmb_logLik:",
                    "-fit$obj$fn(par). For a non-canonical link lme4's Laplace uses the expected (Fisher)",
                    "information in PIRLS and the determinant, glmmTMB the exact Hessian, so the two approximations",
                    "differ; each fitter at its own optimum scores higher on its own objective than at the other's estimates."))
}

# lme4's objective for a family with a scale parameter, recomputed at its estimates
scale_family_check <- function(m) {
  fam <- family(m); y <- m@resp$y; wt <- m@resp$weights; mu <- fitted(m)
  dev <- sum(fam$dev.resids(y, mu, wt)); cmp <- getME(m, "devcomp")$cmp
  aic <- fam$aic(y, rep(1, length(y)), mu, wt, dev)
  list(logLik_recomputed = -0.5 * (aic + cmp[["ldL2"]] + sum(getME(m, "u")^2)),
       dispersion_in_logLik = dev / length(y), sigma_R = sigma(m),
       method = paste("-(family(m)$aic(y, 1, mu, wt, dev) + ldL2 + sum(u^2))/2 with dev = sum(dev.resids) (aic()",
                      "plugs in dispersion dev/n) and ldL2 = log det(Lambda'Z'WZ Lambda + I), W the GLM working weights"))
}

versions <- function() {
  pv <- function(p) tryCatch(as.character(packageVersion(p)), error = function(e) NA)
  si <- sessionInfo()
  list(R = R.version.string, platform = R.version$platform, running = si$running, cores = parallel::detectCores(),
       packages = lapply(setNames(nm = c("lme4", "glmmTMB", "TMB", "Matrix", "nlme", "mlmRev", "jsonlite")), pv))
}
write_ref <- function(case, ref) {
  ref$versions <- versions()
  write(toJSON(ref, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
        file.path(OUT, paste0(case, ".json")))
  cat("wrote ", OUT, "/", case, ".json\n", sep = "")
}
header <- function(case, data, f, family, link, d, prep, note = NULL)
  list(case = case, data = data, formula = fstr(f), family = family, link = link, nrow = nrow(d),
       data_prep = prep, note = note)

NOTE_AGQ <- paste(
  "logLik is the full log-likelihood as R reports it, except lme4 with nAGQ > 1 on binomial data with",
  "n > 1 trials: that value omits the saturated-model log-likelihood sum(dbinom(y, n, y/n, log = TRUE)),",
  "so agq25 keeps lme4's raw logLik/deviance/AIC/BIC and adds logLik_full, recomputed by numerical",
  "integration at its estimates (for 0/1 data the saturated term is 0 and the two agree).",
  "With a non-canonical link (probit, cloglog) lme4's and glmmTMB's Laplace approximations differ (see checks).")
PREP <- function(name, extra = "") paste0("d = glmmbayes/datasets/", name, ".csv.gz read with the factor levels of levels.json",
                                          " (identical to the R package data)", extra)

# ------------------------------------------------------------------ cases
bin_case <- function(case, name, f, link, prep, agq25 = TRUE) {
  d <- shipped(name)
  fam <- bquote(binomial(link = .(link)))
  ref <- header(case, name, f, "binomial", link, d, prep, NOTE_AGQ)
  lap <- fit_timed(bquote(glmer(.(f), data = d, family = .(fam))), d)
  tmb <- fit_timed(bquote(glmmTMB(.(f), data = d, family = .(fam))), d)
  ref$laplace <- lme4_block(lap)
  if (agq25) {
    r <- fit_timed(bquote(glmer(.(f), data = d, family = .(fam), nAGQ = 25)), d)
    full <- exact_binomial(r$fit, fixef(r$fit), getME(r$fit, "theta")[[1]])
    ref$agq25 <- c(lme4_block(r), list(
      logLik_full = full, saturated_logLik = saturated(r$fit),
      logLik_note = paste("logLik/deviance/AIC/BIC are lme4's raw nAGQ = 25 values; logLik_full is the full",
                          "log-likelihood at these estimates by", EXACT_METHOD,
                          "(raw = full - saturated_logLik, the saturated term being 0 for 0/1 data)")))
  }
  ref$glmmtmb <- tmb_block(tmb)
  ref$checks <- cross_check(lap$fit, tmb$fit)
  if (agq25) ref$checks$exact_logLik <- list(
    at_agq25 = full,
    at_lme4_laplace = exact_binomial(lap$fit, fixef(lap$fit), getME(lap$fit, "theta")[[1]]),
    at_glmmtmb = exact_binomial(lap$fit, fixef(tmb$fit)$cond, unname(attr(VarCorr(tmb$fit)$cond[[1]], "stddev"))),
    method = EXACT_METHOD)
  write_ref(case, ref)
}

f_contra <- use ~ age + I(age^2) + urban + livch + (1 | district)
prep_contra <- PREP("Contraception", "; response the factor use (success = \"Y\", i.e. use01 = as.integer(use == \"Y\"))")
if ("contraception_probit" %in% cases) bin_case("contraception_probit", "Contraception", f_contra, "probit", prep_contra)
if ("contraception_cloglog" %in% cases) bin_case("contraception_cloglog", "Contraception", f_contra, "cloglog", prep_contra)
if ("verbagg_probit" %in% cases)
  bin_case("verbagg_probit", "VerbAgg", r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), "probit",
           PREP("VerbAgg", "; response the factor r2 (success = \"Y\")"), agq25 = FALSE)
if ("cbpp_probit" %in% cases)
  bin_case("cbpp_probit", "cbpp", cbind(incidence, size - incidence) ~ period + (1 | herd), "probit", PREP("cbpp"))

f_oats <- yield ~ nitro + Variety + (1 | Block/Variety)
NOTE_SCALE <- paste(
  "lme4's glmer for a family with a scale parameter (Gamma, gaussian with a non-identity link) does not",
  "maximise the Laplace approximation of the marginal likelihood with the dispersion as a parameter: its",
  "logLik is -(aic + ldL2 + |u|^2)/2 (recomputed in laplace.check), aic being the family's aic() with the",
  "dispersion plugged in as deviance/n (Gamma()$aic adds 2), while the random-effect sds are theta * sigma(m)",
  "with sigma(m) = sqrt(pwrss/n), another dispersion estimate. glmmTMB maximises the Laplace approximation",
  "with the dispersion estimated jointly, so it is the parity reference; the lme4 block is recorded as R",
  "reports it (its logLik is not comparable, and its SEs and sds differ from glmmTMB's).",
  "The lmer blocks (identity link, normal response) are context only.")
oats_case <- function(case, fam, famname, link) {
  d <- shipped("Oats")
  ref <- header(case, "Oats", f_oats, famname, link, d,
                PREP("Oats", "; Block and Variety unordered with nlme's level order, nitro numeric"), NOTE_SCALE)
  lap <- fit_timed(bquote(glmer(.(f_oats), data = d, family = .(fam))), d)
  ref$laplace <- c(lme4_block(lap), list(check = scale_family_check(lap$fit)))
  ref$glmmtmb <- tmb_block(fit_timed(bquote(glmmTMB(.(f_oats), data = d, family = .(fam))), d))
  ref$lmer_reml <- lme4_block(fit_timed(bquote(lmer(.(f_oats), data = d)), d))
  ref$lmer_ml <- lme4_block(fit_timed(bquote(lmer(.(f_oats), data = d, REML = FALSE)), d))
  ref$lmer_note <- "lmer_reml: logLik is the REML criterion's log-likelihood (REMLcrit = -2 logLik); lmer_ml: full ML logLik"
  write_ref(case, ref)
}
if ("oats_gamma_log" %in% cases) oats_case("oats_gamma_log", quote(Gamma(link = "log")), "Gamma", "log")
if ("oats_gaussian_log" %in% cases) oats_case("oats_gaussian_log", quote(gaussian(link = "log")), "gaussian", "log")

if ("owls_nb" %in% cases) {
  d <- shipped("Owls")
  f <- SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)
  ref <- header("owls_nb", "Owls", f, "nbinom2", "log", d, PREP("Owls"), paste(
    "Salamanders has no positive covariate suited to an offset (cover, DOP, Wtemp, DOY are standardised),",
    "so Owls is used. glmmtmb_nb2 / glmer_nb: NB2 (Var = mu + mu^2/theta); glmmtmb_nb1: NB1 (Var = mu (1 + phi)).",
    "glmer.nb alternates glmer fits at fixed theta with a theta update; its SEs are conditional on theta and its",
    "Laplace (PIRLS, expected information; the log link is not canonical for NB2) differs slightly from glmmTMB's."))
  ref$glmmtmb_nb2 <- tmb_block(fit_timed(bquote(glmmTMB(.(f), data = d, family = nbinom2)), d))
  ref$glmmtmb_nb1 <- tmb_block(fit_timed(bquote(glmmTMB(.(f), data = d, family = nbinom1)), d))
  r <- fit_timed(bquote(glmer.nb(.(f), data = d)), d)
  ref$glmer_nb <- c(lme4_block(r), list(
    converged = !length(r$fit@optinfo$conv$lme4$messages) && !length(r$warnings) && r$fit@optinfo$conv$opt == 0,
    converged_note = paste("TRUE when the final glmer fit has no lme4 convergence message, its optimizer code is 0",
                           "and glmer.nb raised no warning (e.g. 'alternation limit reached' for the theta loop)")))
  write_ref("owls_nb", ref)
}
