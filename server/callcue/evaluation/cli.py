"""`callcue eval ...`: run the evaluations and print tables (the lead mounts `eval_app`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

eval_app = typer.Typer(help="Evaluate understanding layers on public data sets.", no_args_is_help=True,
                       add_completion=False)



@eval_app.callback()
def _group() -> None:
    """Evaluate understanding layers on public data sets (../shared/data)."""


INTENT_SETS = ("banking77", "clinc150", "multidogo", "sgd", "nlupp")
# slow (speech synthesis + recognition): only when asked for with --only asr
EXTRA_SETS = ("asr",)


def default_data_dir() -> Path:
    """../shared/data beside the checkout: where the project keeps third-party data, never in the repo."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _pct(x: float) -> str:
    return "  n/a" if x != x else f"{100 * x:5.1f}"  # x != x: NaN


def _table(rows: list[list[str]], header: list[str]) -> str:
    w = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(header), line(["-" * x for x in w]), *map(line, rows)])


def render(name: str, res: dict[str, Any]) -> str:
    """Human tables for one evaluation's result dict."""
    if name == "banking77":
        rows = []
        for s in res["splits"]:
            rows.append([f"seed {s['seed']}{' (tuned on)' if s['seed'] == 0 else ''}", s["n_train"], s["n_test"],
                         _pct(s["ours_full"]), _pct(s["emb_lr_full"]), _pct(s["tfidf_lr_full"]),
                         _pct(s["ours_10shot"]), _pct(s["emb_lr_10shot"]), _pct(s["tfidf_lr_10shot"])])
        return f"Banking77 ({res['n']} utterances, {res['intents']} intents; held-out 20% of train)\n" + _table(
            rows, ["split", "train", "test", "ours", "emb+LR", "tfidf+LR", "ours 10-shot", "emb 10-shot", "tfidf 10-shot"])
    if name == "clinc150":
        return "CLINC150 (fit on 90% train; threshold = most OOS recall losing <=2 pts in-scope, tuned on 10% train + oos_train; reported on val / oos_val)\n" + _table(
            [[res["n_fit"], res["n_val"], _pct(res["inscope_acc_no_reject"]), _pct(res["inscope_acc"]),
              _pct(res["oos_recall"]), f"{res['threshold']:.2f}", f"{res['temperature']:.2f}", f"{res['ece']:.3f}",
              _pct(res["inscope_acc_at_0.5"]), _pct(res["oos_recall_at_0.5"])]],
            ["fit", "val", "in-scope acc", "in-scope acc (w/ reject)", "OOS recall", "threshold", "T", "ECE", "in-scope@0.5", "OOS@0.5"])
    if name in ("multidogo", "nlupp"):
        rows = [[k, _pct(v["precision"]), _pct(v["recall"]), v["support"], v["predicted"]] for k, v in res["per_intent"].items()]
        head = (f"MultiDoGo dev customer turns ({res['n_turns']}), starter config as shipped; "
                f"false triggers on 'none' turns: {_pct(res['false_trigger_rate_on_none_turns'])}%"
                if name == "multidogo" else f"NLU++ banking ({res['n']} utterances), starter config via loose label map")
        return head + "\n" + _table(rows, ["intent", "precision", "recall", "support", "predicted"])
    if name == "asr":
        rows = [[k, _pct(v["precision"]), _pct(v["recall"]), _pct(res["asr"][k]["precision"]), _pct(res["asr"][k]["recall"]),
                 v["support"]] for k, v in res["reference"].items()]
        return (f"MultiDoGo dev turns spoken by espeak-ng, 8 kHz mu-law, recognised by {res['engine']} "
                f"({res['n']} turns, WER {_pct(res['wer'])}%); false triggers on 'none' turns: "
                f"text {_pct(res['ref_false_trigger'])}%, ASR {_pct(res['asr_false_trigger'])}%\n"
                + _table(rows, ["intent", "P text", "R text", "P asr", "R asr", "support"])
                + "\nsamples (reference -> heard):\n" + "\n".join(f"  {a!r} -> {b!r}" for a, b in res["examples"]))
    if name == "sgd":
        return (f"SGD Banks_1 user turns ({res['n_turns']}; none is a starter intent): "
                f"false trigger rate {_pct(res['false_trigger_rate'])}%  fired: {res['fired']}")
    return json.dumps(res, indent=2)


@eval_app.command("intents")
def intents(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    quick: bool = typer.Option(False, "--quick", help="subsets: about a minute instead of several"),
    only: str | None = typer.Option(None, "--only", help=f"comma list of {','.join(INTENT_SETS + EXTRA_SETS)} (asr is slow, never by default)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write all results to this JSON file"),
) -> None:
    """Intent accuracy / few-shot / out-of-scope / dialogue precision-recall, with baselines."""
    from callcue.evaluation import intents_eval as ev
    from callcue.understand.encoder import SentenceEncoder

    data = data or default_data_dir()
    if not data.is_dir():
        typer.echo(f"error: data directory {data} not found (pass --data)", err=True)
        raise typer.Exit(2)
    sets = [s.strip() for s in only.split(",")] if only else list(INTENT_SETS)
    bad = [s for s in sets if s not in INTENT_SETS + EXTRA_SETS]
    if bad:
        typer.echo(f"error: unknown set(s) {bad}; choose from {', '.join(INTENT_SETS + EXTRA_SETS)}", err=True)
        raise typer.Exit(2)
    enc = SentenceEncoder.load()
    funcs: dict[str, Callable[..., Any]] = {"banking77": ev.banking77, "clinc150": ev.clinc150, "multidogo": ev.multidogo,
             "sgd": ev.sgd_banking, "nlupp": ev.nlupp, "asr": ev.asr_roundtrip}
    results: dict[str, Any] = {"quick": quick}
    for name in sets:
        t0 = time.perf_counter()
        try:
            res = funcs[name](data, enc, quick=quick)
        except FileNotFoundError as e:
            typer.echo(f"skip {name}: {e}", err=True)
            continue
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = res
        typer.echo(render(name, res) + f"\n({res['seconds']} s)\n")
    if "banking77" in results or "clinc150" in results:
        typer.echo("Published (for comparison; official test splits, which we do not have):")
        for ds in ("banking77", "clinc150"):
            for k, v in ev.PUBLISHED[ds].items():
                typer.echo(f"  {ds:9s} {k}: {v}")
    if json_out:
        json_out.write_text(json.dumps(results, indent=2, default=float))


# ---- cards (privacy/redaction, issue 3) -- owned by the redaction engineer; keep this block separate ----
@eval_app.command("cards")
def cards(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    n: int = typer.Option(20, "--n", min=1, help="spoken card numbers to compose (half Luhn-valid)"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", min=1, help="Whisper CPU threads"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """Card numbers spoken with real FSDD digits -> live pipeline + Whisper -> Redactor: recall, false alarms, leaks."""
    from callcue.evaluation.cards_eval import format_report, run_cards_eval

    data = data or default_data_dir()
    if not data.is_dir():
        typer.echo(f"error: data directory {data} not found (pass --data)", err=True)
        raise typer.Exit(2)
    try:
        rep = run_cards_eval(data, n=n, seed=seed, threads=threads)
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(format_report(rep))
    if json_out:
        json_out.write_text(json.dumps(rep, indent=2))
    if rep["leaks"]:
        raise typer.Exit(1)  # a leak is a failure, not a statistic
# ---- end cards block ----


# ---- asr / latency / all (issue 3 evaluation) -- owned by the evaluation engineer; keep this block separate ----
def _data_or_exit(data: Path | None) -> Path:
    """The shared data dir, or exit 2 with a message saying where we looked and how to fix it."""
    d = data or default_data_dir()
    if not d.is_dir():
        typer.echo(f"error: data directory {d} not found: the evaluations read third-party data from "
                   "../shared/data beside the checkout (or pass --data DIR)", err=True)
        raise typer.Exit(2)
    return d


@eval_app.command("asr")
def asr(
    data: Path | None = typer.Option(None, "--data", help="data dir holding speech/manifest.jsonl (default: ../shared/data beside the repo)"),
    quick: bool = typer.Option(False, "--quick", help="two clips of each set instead of all"),
    engines: str = typer.Option("auto,moonshine,whisper", "--engines", help="comma list of auto and the registered engines (moonshine, whisper, vosk)"),
    sets: str | None = typer.Option(None, "--sets", help="comma list of manifest sets (default: every set the manifest names)"),
    max_per_set: int | None = typer.Option(None, "--max-per-set", min=1, help="at most this many clips of each set (FSDD has 2,700)"),
    threads: int = typer.Option(1, "--threads", min=1, help="decoder threads per engine"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """ASR WER per set, single-digit accuracy, digit read-back, RTF and decode time per engine, through the live channel pipeline."""
    from callcue.evaluation.asr_eval import engine_choices, format_report, run_asr_eval

    d = _data_or_exit(data)
    names = [e.strip() for e in engines.split(",") if e.strip()]
    bad = [e for e in names if e not in engine_choices()]
    if bad or not names:
        typer.echo(f"error: unknown engine(s) {bad or engines!r}; choose from {', '.join(engine_choices())}", err=True)
        raise typer.Exit(2)
    try:
        rep = run_asr_eval(d, quick=quick, threads=threads, engines=names, max_per_set=max_per_set,
                           sets=[x.strip() for x in sets.split(",") if x.strip()] if sets else None)  # fmt: skip
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(format_report(rep))
    if json_out:
        json_out.write_text(json.dumps(rep, indent=2, default=float))


@eval_app.command("qa")
def qa(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    n: int = typer.Option(16, "--n", min=1, help="interactions (each of the 16 behaviour combinations once per 16)"),
    asr: bool = typer.Option(False, "--asr", help="as calls: espeak-ng audio (bench/callgen.py) recognised by Whisper"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """Scorecard answers vs behaviours known by construction (notice, verification order, promises, empathy),
    as text, or with --asr through speech synthesis and recognition."""
    import asyncio
    import json

    from callcue.evaluation.qa_eval import format_report, run_qa_eval

    d = _data_or_exit(data)
    result = asyncio.run(run_qa_eval(d, n, asr=asr))
    typer.echo(format_report(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2, default=str))


@eval_app.command("topics")
def topics(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    quick: bool = typer.Option(False, "--quick", help="one split per corpus instead of three"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """Emerging-topic clusters vs intents held out of the configured set: purity, coverage, reach."""
    from callcue.evaluation.topics_eval import format_report, run_topics_eval

    d = _data_or_exit(data)
    result = run_topics_eval(d, quick=quick)
    typer.echo(format_report(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2, default=str))


@eval_app.command("knowledge")
def knowledge(
    kb: Path = typer.Option(..., "--kb", help="kb.jsonl passages, or a folder of .md/.html articles"),
    queries: Path = typer.Option(..., "--queries", help="labelled turns: context, utterance, knowledge_seeking, gold_passages"),
    train: Path | None = typer.Option(None, "--train", help="fit the re-ranker and asking head on these labelled turns first"),
    cv: int = typer.Option(0, "--cv", min=0, help="also report K-fold cross-validation by dialogue (K >= 2)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """Knowledge retrieval: hit@1, hit@5 and MRR on knowledge-seeking turns, show precision and
    recall, time per query; a BM25 reference beside."""
    from callcue.evaluation.knowledge_eval import render, run
    from callcue.understand.encoder import SentenceEncoder

    for f in (kb, queries, *( [train] if train else [])):
        if not f.exists():
            typer.echo(f"error: {f} does not exist", err=True)
            raise typer.Exit(2)
    enc = SentenceEncoder.load()
    try:
        result = run(kb, queries, embed=enc.embed, train=train, cv=cv)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2, default=str))


@eval_app.command("bot")
def bot(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    flow: str = typer.Option("bank", "--flow", help="the flow under config/flows"),
    speech: bool = typer.Option(False, "--speech", help="say each caller turn with a synthetic voice and recognize it (the ear)"),
    caller_voice: str = typer.Option("piper", "--caller-voice", help="the caller's synthetic voice with --speech: piper or espeak"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """The virtual agent on scripted callers (task success, slot accuracy, turns, handoffs),
    on out-of-scope openings from SGD Banks_1 (it should hand them to a person) and on the real
    requests of MultiDoGo finance (lost cards start the task; nothing else does)."""
    from callcue.bot.flows import load_flows
    from callcue.config import load_settings
    from callcue.evaluation.bot_eval import render, run_bot_eval
    from callcue.understand.intents import IntentClassifier, load_intents

    s = load_settings(None)
    flows = load_flows(s.resolve(s.bot.flows_dir))
    if flow not in flows:
        typer.echo(f"error: no flow {flow!r} (have: {', '.join(flows) or 'none'})", err=True)
        raise typer.Exit(2)
    clf = IntentClassifier.from_config(load_intents(s.resolve(s.understanding.intents_file)))
    d = data or default_data_dir()
    hear = None
    if speech:
        from callcue.asr.select import load_engine
        from callcue.evaluation.bot_eval import speech_ear

        engine, _note = load_engine(s.asr)
        hear = speech_ear(engine, s.vad, caller_voice)
    result = run_bot_eval(flows[flow], clf, d / "dialogues" / "sgd_banking" / "banks1_train.jsonl",
                          limit=40 if speech else 200, hear=hear,
                          multidogo_file=d / "dialogues" / "multidogo" / "finance_dev.jsonl")  # fmt: skip
    result["speech"] = caller_voice if speech else None
    typer.echo(render(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2, default=str))


@eval_app.command("latency")
def latency(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    quick: bool = typer.Option(False, "--quick", help="12 dialogues and 6 s of concurrent calls instead of 400 and 30 s"),
    calls: int = typer.Option(50, "--calls", min=1, help="concurrent calls for the load measurement"),
    seconds: float | None = typer.Option(None, "--seconds", min=1, help="how long the concurrent calls talk"),
    word_s: float = typer.Option(0.3, "--word-s", min=0.05, help="seconds between partials of one call (one per word)"),
    cpu: int | None = typer.Option(None, "--cpu", help="CPU to pin the per-detector run to (default: lowest allowed)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the full result to this JSON file"),
) -> None:
    """Per-detector p50/p95 per transcript update on one CPU, and understanding time per update under N calls."""
    from callcue.evaluation.latency_eval import (
        concurrent_latency,
        detector_latency,
        format_report,
    )

    d = _data_or_exit(data)
    try:
        det = detector_latency(d, quick=quick, cpu=cpu)
        typer.echo(format_report(det, None))
        conc = concurrent_latency(d, calls=calls, seconds=seconds or (6.0 if quick else 30.0), word_s=word_s)
        typer.echo(format_report(None, conc))
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    if json_out:
        json_out.write_text(json.dumps({"detectors": det, "concurrent": conc}, indent=2, default=float))


@eval_app.command("all")
def all_evals(
    data: Path | None = typer.Option(None, "--data", help="shared data dir (default: ../shared/data beside the repo)"),
    quick: bool = typer.Option(False, "--quick", help="CI-sized subsets of every evaluation"),
) -> None:
    """Intents, cards, ASR and latency in turn: every table issue 3 asks for. Exits 1 on errors or card leaks."""
    d = _data_or_exit(data)
    steps = [
        # the espeak-ng + Whisper pass ("asr") is part of issue 3, so `all` includes it
        ("intents", lambda: intents(data=d, quick=quick, only=",".join(INTENT_SETS + EXTRA_SETS), json_out=None)),
        ("cards", lambda: cards(data=d, n=4 if quick else 20, seed=0, threads=1, json_out=None)),
        ("asr", lambda: asr(data=d, quick=quick, engines="moonshine,whisper", sets=None, max_per_set=None if quick else 100,
                            threads=1, json_out=None)),
        ("latency", lambda: latency(data=d, quick=quick, calls=50, seconds=None, word_s=0.3, cpu=None, json_out=None)),
    ]
    failed: list[str] = []
    for name, run in steps:
        typer.echo(f"\n===== callcue eval {name}{' --quick' if quick else ''} =====\n")
        t0 = time.perf_counter()
        try:
            run()
        except typer.Exit as e:
            if e.exit_code:
                failed.append(f"{name} (exit {e.exit_code}{': card digits leaked' if name == 'cards' and e.exit_code == 1 else ''})")
        except Exception as e:  # one broken evaluation must not hide the others' tables
            typer.echo(f"error in {name}: {type(e).__name__}: {e}", err=True)
            failed.append(f"{name} ({type(e).__name__})")
        typer.echo(f"({name}: {time.perf_counter() - t0:.0f} s)")
    if failed:
        typer.echo(f"\nFAILED: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo("\nall evaluations ran; no card digits leaked")
# ---- end asr / latency / all block ----
