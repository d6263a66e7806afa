# REML reference for the sleepstudy LMM (writes tests/reference/sleepstudy_reml.json)
suppressMessages(library(lme4))
fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = TRUE)
out <- list(
  formula = "Reaction ~ Days + (Days | Subject)",
  REMLcrit = unname(REMLcrit(fm)),
  fixef = as.list(fixef(fm)),
  se = as.list(sqrt(diag(as.matrix(vcov(fm))))),
  theta = as.list(getME(fm, "theta")),
  sigma = sigma(fm)
)
json <- paste0("{\n", paste(sprintf("  \"%s\": %s", names(out), sapply(out, function(v) {
  if (is.list(v)) paste0("{", paste(sprintf("\"%s\": %.12g", names(v), unlist(v)), collapse = ", "), "}")
  else if (is.character(v)) sprintf("\"%s\"", v) else sprintf("%.12g", v)
})), collapse = ",\n"), "\n}\n")
cat(json, file = "tests/reference/sleepstudy_reml.json")
