"""Parity tolerances, fixed in one place (never loosened to make a test pass)."""

LOGLIK_ABS = 1e-3  # loglik >= max(lme4, glmmTMB) - LOGLIK_ABS
FIXEF_REL = 2e-3  # relative; absolute where |estimate| < 1
SE_REL = 0.02  # standard errors within 2%
SDCOR_ABS = 2e-3  # random-effect sds and correlations
LMM_DEVIANCE_ABS = 1e-6  # sleepstudy LMM deviance (ML and REML)
SAME_OPTIMUM_ABS = 1e-2  # logLik gap below which two fits are "at the same optimum"
