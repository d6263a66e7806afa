"""The ``glmmbayes`` command line (also ``python -m glmmbayes``).

Exit codes, for scripts:

* 0 -- done (convergence remarks are printed as warnings on stderr and kept in --json);
* 1 -- a fit failed (with ``--methods``/``compare``: at least one method failed; the others
  are still reported and written);
* 2 -- usage error or bad input: an unknown option, a missing or unreadable data file, a
  column, term, family or option that the model rejects (the package's named error,
  e.g. ``DataError: ...``, on stderr, no traceback);
* 3 -- a needed optional component is missing (pyarrow for Parquet/Feather, the studies engine);
* 4 -- with ``--strict``: every fit ran but at least one did not converge.
"""

from __future__ import annotations

import shlex
import sys
import warnings
from typing import Any, Sequence

import click

from .errors import FitError

EXIT_OK, EXIT_FIT_FAILED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_NOT_CONVERGED = 0, 1, 2, 3, 4

# options passed to the methods that declare them (glmmbayes.methods), CLI name -> option name
METHOD_OPTIONS = {"nagq": "nAGQ", "draws": "draws", "tune": "tune", "chains": "chains", "seed": "seed",
                  "cores": "cores", "target_accept": "target_accept"}


class _Exit(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _fail(code: int, message: str):
    raise _Exit(code, message)


def _command_line(ctx: click.Context) -> str:
    root = ctx.find_root()
    args = (root.obj or {}).get("argv", sys.argv[1:])
    return "glmmbayes " + " ".join(shlex.quote(a) for a in args)


def _load(data: str, factor: Sequence[str], levels: Sequence[str], levels_json: str | None):
    from .datafiles import MissingDependency, apply_factors, parse_levels, read_levels_json, read_table

    try:
        frame = read_table(data)
    except MissingDependency as e:
        _fail(EXIT_UNAVAILABLE, str(e))
    lv = read_levels_json(levels_json) if levels_json else {}
    lv.update(parse_levels(levels))
    return apply_factors(frame, factor, lv)


def _method_options(methods: Sequence[str], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's share of the command-line options; an option no chosen method takes is a
    usage error naming the methods that do."""
    from . import methods as table

    given = {METHOD_OPTIONS[k]: v for k, v in given.items() if v is not None}
    per = {m: {} for m in methods}
    for name, value in given.items():
        takers = [m for m in methods if name in {o.name for o in table.get(m).options}]
        if not takers:
            owners = " or ".join(table.OWNERS.get(name, [])) or "no method"
            flag = "--" + next(k for k, v in METHOD_OPTIONS.items() if v == name).replace("_", "-")
            _fail(EXIT_BAD_INPUT, f"SpecError: {flag} applies to method {owners}, not to {', '.join(methods)}")
        for m in takers:
            per[m][name] = value
    return per


def _echo_warnings(caught) -> None:
    """The package's warnings as one line each; others (a library's) in Python's usual form."""
    from .errors import GlmmWarning

    for w in caught:
        if issubclass(w.category, GlmmWarning):
            click.echo(f"glmmbayes: warning: {w.category.__name__}: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _run(ctx, data, formula, family, link, weights, offset, reml, na_action, factor, levels, levels_json,
         methods: Sequence[str], single: bool, report, json_out, quiet, strict, opts) -> None:
    from . import api
    from .compare import compare
    from .errors import GlmmError
    from .methods import get
    from .spec import as_spec

    frame = _load(data, factor, levels, levels_json)
    spec_kw = {k: v for k, v in dict(family=family, link=link, weights=weights, offset=offset,
                                     REML=reml, na_action=na_action).items() if v is not None}
    spec = as_spec(formula, **spec_kw)
    for m in methods:
        get(m)  # an unknown method name is bad input, before any fit
    per = _method_options(methods, opts)
    api.design(spec, frame)  # bad columns and responses are bad input, whatever the method
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        if single:
            try:
                result = api.fit(spec, frame, method=methods[0], **per[methods[0]])
            except GlmmError as e:
                if isinstance(e, FitError):
                    _fail(EXIT_FIT_FAILED, f"{type(e).__name__}: {e}")
                raise
            except Exception as e:  # noqa: BLE001 -- a numerical failure of the method is a failed fit
                _fail(EXIT_FIT_FAILED, f"method {methods[0]} failed: {type(e).__name__}: {e}")
        else:
            result = compare(spec, frame, methods=methods, options=per, progress=not quiet)
    _echo_warnings(caught)
    if not single:  # compare keeps each fit's remarks in fit.messages: say them as fit() would
        for m, f in result.fits.items():
            if f.messages:
                kind = "did not converge" if not f.converged else "remarks"
                click.echo(f"glmmbayes: warning: method {m} {kind}: {'; '.join(f.messages)}", err=True)
    _outputs(ctx, result, data, report, json_out, quiet)
    fits = [result] if single else list(result.fits.values())
    if not single and result.errors:
        for m, e in result.errors.items():
            click.echo(f"glmmbayes: error: method {m} failed: {e}", err=True)
        ctx.exit(EXIT_FIT_FAILED)
    if strict and not all(f.converged for f in fits):
        ctx.exit(EXIT_NOT_CONVERGED)


def _outputs(ctx, result, data, report, json_out, quiet) -> None:
    from . import __version__

    command = _command_line(ctx)
    if not quiet:
        click.echo(result.summary() if hasattr(result, "summary") else str(result))
    if json_out:
        from .export import write_json

        write_json(result, json_out, {"glmmbayes_version": __version__, "command": command, "data_file": data})
    if report:
        from .html_report import report as write_report

        write_report(result, report, command=command)
        if not quiet:
            click.echo(f"report written to {report}", err=True)


# ------------------------------------------------------------------------ click


def _model_options(f):
    opts = [
        click.argument("data", type=click.Path(dir_okay=False)),
        click.option("--formula", "-f", required=True, help='lme4 formula, e.g. "y ~ x + (1 | g)".'),
        click.option("--family", default=None, help="gaussian (default, as lmer; binomial for a cbind() response), binomial, poisson, Gamma, nbinom2, nbinom1."),
        click.option("--link", default=None, help="Link function (default: the family's canonical link)."),
        click.option("--weights", default=None, help="Column (or expression) of prior weights."),
        click.option("--offset", default=None, help="Column (or expression) added to the linear predictor."),
        click.option("--reml/--ml", "reml", default=None, help="REML or ML (default: REML for the gaussian LMM, ML otherwise)."),
        click.option("--na-action", type=click.Choice(["fail", "omit"]), default=None,
                     help="Missing values: an error (fail) or drop the rows (omit)."),
        click.option("--factor", multiple=True, metavar="COLUMN",
                     help="Treat COLUMN as a factor, levels sorted as R's factor() (repeatable)."),
        click.option("--levels", multiple=True, metavar="COLUMN=L1,L2,...",
                     help="Treat COLUMN as a factor with these levels in this order (repeatable)."),
        click.option("--levels-json", type=click.Path(dir_okay=False), default=None,
                     help="JSON file {column: [levels]} (as written by `datasets --levels-out`)."),
        click.option("--nAGQ", "nagq", type=int, default=None, help="Quadrature points (laplace/agq)."),
        click.option("--draws", type=int, default=None, help="hmc: draws per chain."),
        click.option("--tune", type=int, default=None, help="hmc: tuning steps per chain."),
        click.option("--chains", type=int, default=None, help="hmc: number of chains."),
        click.option("--cores", type=int, default=None, help="hmc: processes for the chains."),
        click.option("--target-accept", type=float, default=None, help="hmc: NUTS target acceptance."),
        click.option("--seed", type=int, default=None, help="Random seed (hmc)."),
        click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="Write a self-contained HTML report here."),
        click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
                     help="Write estimates, se, varcorr, logLik and messages as JSON here."),
        click.option("--quiet", "-q", is_flag=True, help="No summary and no progress bar."),
        click.option("--strict", is_flag=True, help="Exit with 4 when a fit did not converge."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _split_methods(text: str) -> list[str]:
    out = [m.strip() for m in text.split(",") if m.strip()]
    if not out:
        raise click.BadParameter("give at least one method", param_hint="--methods")
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="glmmbayes", prog_name="glmmbayes")
def cli():
    """Fit GLMMs from lme4 formulas by several methods and compare them."""


@cli.command("fit")
@_model_options
@click.option("--method", "-m", default=None, help="pql, laplace (default), agq, joint or hmc.")
@click.option("--methods", "methods_", default=None, metavar="M1,M2,...",
              help="Several methods side by side (as `compare`).")
@click.pass_context
def fit_cmd(ctx, method, methods_, **kw):
    """Fit the model in DATA (CSV, TSV, Parquet or Feather) by one method, or several with --methods."""
    if method and methods_:
        raise click.UsageError("give --method or --methods, not both")
    if methods_:
        _run_kw(ctx, _split_methods(methods_), single=False, **kw)
    else:
        _run_kw(ctx, [method or "laplace"], single=True, **kw)


@cli.command("compare")
@_model_options
@click.option("--methods", "methods_", default="pql,laplace,agq,joint,hmc", show_default=True,
              metavar="M1,M2,...", help="Methods to run, comma-separated.")
@click.pass_context
def compare_cmd(ctx, methods_, **kw):
    """Fit the model in DATA by several methods and show the estimates side by side."""
    _run_kw(ctx, _split_methods(methods_), single=False, **kw)


def _run_kw(ctx, methods, single, data, formula, family, link, weights, offset, reml, na_action, factor, levels,
            levels_json, report, json_out, quiet, strict, **opts):
    _run(ctx, data, formula, family, link, weights, offset, reml, na_action, factor, levels, levels_json,
         methods, single, report, json_out, quiet, strict, opts)


@cli.command("study")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--store", type=click.Path(), default=None, help="Where results are stored (resumable).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Dask scheduler address (e.g. tcp://host:8786); local processes when omitted.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def study_cmd(file, store, scheduler, quiet):
    """Run the simulation study defined in the Python FILE."""
    try:
        from .studies import run_study_from_file
    except ImportError:
        _fail(EXIT_UNAVAILABLE, "the studies engine (glmmbayes.studies.run_study_from_file) is not available "
                                "in this version of glmmbayes")
    result = run_study_from_file(file, store=store, scheduler=scheduler, progress=not quiet)
    if result is not None and not quiet:
        click.echo(result.to_string() if hasattr(result, "to_string") else str(result))


@cli.command("datasets")
@click.argument("name", required=False)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Export the data set (CSV, TSV, Parquet or Feather by extension).")
@click.option("--levels-out", type=click.Path(dir_okay=False), default=None,
              help="Also write its factor levels as JSON (for --levels-json).")
def datasets_cmd(name, out, levels_out):
    """List the shipped data sets, describe one (NAME), or export it (NAME --out FILE)."""
    from . import datasets
    from .datafiles import MissingDependency, factor_levels, write_table

    if name is None:
        if out or levels_out:
            raise click.UsageError("--out and --levels-out need a data set NAME")
        for nm in datasets.names():
            d = datasets.load(nm)
            about = datasets.describe(nm).split(": ", 1)[-1].split(";")[0].split(". ")[0]
            about = about if len(about) <= 64 else about[:61].rsplit(" ", 1)[0] + "..."
            click.echo(f"{nm:<14} {len(d):>6} rows {d.shape[1]:>3} cols  {about}")
        return
    frame = datasets.load(name)
    if out is None and levels_out is None:
        click.echo(datasets.describe(name))
        return
    if out:
        try:
            write_table(frame, out)
        except MissingDependency as e:
            _fail(EXIT_UNAVAILABLE, str(e))
        click.echo(f"{name}: {len(frame)} rows written to {out}", err=True)
    if levels_out:
        import json

        with open(levels_out, "w", encoding="utf-8") as fh:
            json.dump(factor_levels(frame), fh, indent=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: sys.argv[1:]); returns the exit code."""
    from .errors import FitError, GlmmError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="glmmbayes", standalone_mode=False, obj={"argv": argv})
        return code if isinstance(code, int) else EXIT_OK  # ctx.exit(n) comes back as n
    except _Exit as e:
        click.echo(f"glmmbayes: error: {e}", err=True)
        return e.code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except FitError as e:
        click.echo(f"glmmbayes: error: {type(e).__name__}: {e}", err=True)
        return EXIT_FIT_FAILED
    except GlmmError as e:
        click.echo(f"glmmbayes: error: {type(e).__name__}: {e}", err=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
