"""Near/exact dedupe and decontamination: sketches match datasketch, planted duplicates are found, distinct
episodes are kept (precision and recall printed and asserted), eval tasks are kept out."""
import random

import numpy as np
import pytest
from datasketch import MinHash

from tinygpt.traces.atraj import Reward, Verdict
from tinygpt.traces.decontaminate import EvalSet, load_eval_set
from tinygpt.traces.errors import TraceError
from tinygpt.traces.export import dedupe_text
from tinygpt.traces.near_dedupe import NearDeduper, Sketcher, band_bytes
from tinygpt.traces.reader import read_episode
from tinygpt.traces.recorder import Recorder
from tinygpt.traces.shingles import Words, fold32
from tinygpt.traces.to_data import ExportConfig, traces_to_data

VOCAB = [f"w{i}" for i in range(3000)]


def test_words_ignore_case_and_spacing_and_hash_by_content():
    a = Words("The  quick\tbrown\n fox jumps")
    b = Words("the quick brown fox jumps ")
    assert a.count == 5 and np.array_equal(a.ngram_hashes(3), b.ngram_hashes(3))
    grams = Words("x y z x y z").ngram_hashes(3)
    assert grams[0] == grams[3] and len(set(grams.tolist())) == 3
    assert Words("a b c").whole_hash()[0] == Words("q a b c").ngram_hashes(3)[-1]
    assert len(Words("").ngram_hashes(1)) == 0 and Words("   ").count == 0


def test_sketch_is_bit_identical_to_datasketch_update_batch():
    rng = np.random.default_rng(0)
    sketcher = Sketcher(num_perm=128, seed=1)
    for n in (1, 7, 500):
        hashes = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        reference = MinHash(num_perm=128, seed=1, hashfunc=int)
        reference.update_batch(hashes.tolist())
        assert np.array_equal(sketcher.signature(hashes), reference.hashvalues)


def test_near_deduper_keeps_the_first_of_a_cluster():
    rng = random.Random(1)
    sketcher = Sketcher(128)
    base = rng.choices(VOCAB, k=200)
    near = list(base)
    near[100] = "changed"
    other = rng.choices(VOCAB, k=200)
    sigs = [sketcher.signature(fold32(Words(" ".join(w)).ngram_hashes(5))) for w in (base, near, other)]
    deduper = NearDeduper(threshold=0.8, num_perm=128)
    assert deduper.duplicate_of(0, band_bytes(sigs[0])) is None
    assert deduper.duplicate_of(1, band_bytes(sigs[1])) == 0
    assert deduper.duplicate_of(2, band_bytes(sigs[2])) is None
    # The index is an ordinary MinHashLSH: datasketch's own query finds what duplicate_of inserted.
    assert deduper.lsh.query(sketcher.minhash(sigs[1])) == [0]
    assert sorted(deduper.lsh.query(sketcher.minhash(sigs[2]))) == [2]


def _record(directory, name, task, results, rng):
    header = dict(episode_id=name, task_id=name, split="train", created_at=0.0, model="m", model_fingerprint="f",
                  tokenizer_hash="h", chat_template_hash="c")
    from tinygpt.traces.atraj import Header, Sampling
    with Recorder(directory, Header(**header, sampling=Sampling(temperature=1.0)), fsync="none") as rec:
        rec.message("system", "You are a helpful file agent. " * 10, None)
        rec.message("user", " ".join(task), [1, 2])
        prompt = [1, 2, 3]
        for step, result in enumerate(results):
            rec.model_call(prompt_token_ids=prompt, output_token_ids=[4, 5], text="let me look at that",
                           tool_calls=[{"id": f"c{step}", "name": "ls", "arguments": {"path": "/"}}],
                           finish_reason="tool_calls", latency_s=0.1)
            rec.tool_result(call_id=f"c{step}", name="ls", content=" ".join(result), token_ids=[6])
            prompt = [6, 7]
        rec.model_call(prompt_token_ids=prompt, output_token_ids=[8], text="done", finish_reason="stop",
                       latency_s=0.1)
        rec.end(Reward(value=1.0, source="t"), Verdict(passed=True, checker="t"))


def _mutate(words, rng):
    words = list(words)
    words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return words


def _shingles(path):
    return set(Words(dedupe_text(read_episode(path))).ngram_hashes(5).tolist())


def _jaccard(a, b):
    return len(a & b) / len(a | b)


def test_planted_near_duplicates_are_removed_and_distinct_episodes_kept(tmp_path):
    rng = random.Random(42)
    src, source_of, planted_exact = tmp_path / "src", {}, set()
    plans = []
    for i in range(240):
        name = f"e{i:04d}"
        if plans and i % 6 == 5:  # a near copy of an earlier episode: one word of its task changed
            origin, task, results = rng.choice(plans)
            task = _mutate(task, rng)
            source_of[name] = origin
        elif plans and i % 10 == 9:
            origin, task, results = rng.choice(plans)
            planted_exact.add(name)
        else:  # distinct: same template and tools, different task and results
            task = rng.choices(VOCAB, k=rng.randint(30, 60))
            results = [rng.choices(VOCAB, k=rng.randint(20, 60)) for _ in range(2)]
            plans.append((name, task, results))
        _record(src, name, task, results, rng)
    shingles = {p.name.split(".")[0]: _shingles(p) for p in src.iterdir()}
    near_j = [_jaccard(shingles[n], shingles[o]) for n, o in source_of.items()]
    distinct = [p[0] for p in plans]
    far_j = max(_jaccard(shingles[a], shingles[b]) for a in distinct for b in distinct if a < b)
    assert min(near_j) >= 0.85 and far_j < 0.3  # the plant is what it claims to be

    out = tmp_path / "out"
    report = traces_to_data([src], out, ExportConfig(threshold=0.8, num_perm=128, ngram=5))
    kept = {line.split('"episode_id":"')[1].split('"')[0] for line in (out / "chat.jsonl").read_text().splitlines()}
    removed = {f"e{i:04d}" for i in range(240)} - kept
    planted = set(source_of) | planted_exact
    true_positive = len(removed & planted)
    precision = true_positive / len(removed)
    recall = true_positive / len(planted)
    print(f"dedupe: planted {len(source_of)} near (Jaccard {min(near_j):.2f}-{max(near_j):.2f}) + "
          f"{len(planted_exact)} exact among {len(distinct)} distinct (max Jaccard {far_j:.2f}); removed "
          f"{len(removed)}: precision {precision:.3f}, recall {recall:.3f}")
    assert report.exact_dup == len(planted_exact) and report.near_dup == len(removed) - len(planted_exact)
    assert precision == 1.0 and recall >= 0.95
    assert kept >= set(distinct)


def test_decontamination_by_task_id_and_by_13_gram(tmp_path):
    task = " ".join(f"t{i}" for i in range(40))
    evals = EvalSet(texts=[" ".join(f"t{i}" for i in range(10, 23))], ids=["secret-task"], n=13)
    assert evals.contains("secret-task", Words("nothing in common"))
    assert evals.contains("train-1", Words(f"prefix {task.upper()} suffix"))  # 13 shared words, any case
    twelve = EvalSet(texts=[" ".join(f"t{i}" for i in range(10, 22)) + " other"], ids=[], n=13)
    assert not twelve.contains("train-1", Words(task))  # only 12 consecutive words shared


def test_short_eval_texts_match_only_when_contained_whole():
    evals = EvalSet(texts=["list my files please"], ids=[], n=13)
    assert evals.contains("x", Words("Hi! list  my FILES please now"))
    assert not evals.contains("x", Words("please list my files"))


def test_eval_files_are_jsonl_with_ids_or_texts(tmp_path):
    good = tmp_path / "evals.jsonl"
    good.write_text('{"id": "a1", "prompt": "one two three"}\n\n"just a text"\n{"task_id": 7}\n')
    evals = load_eval_set([good])
    assert evals.ids == {"a1", "7"} and evals.texts == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok"}\n{"nothing": 1}\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:2: an eval task needs an 'id'"):
        load_eval_set([bad])
    bad.write_text("not json\n")
    with pytest.raises(TraceError, match=r"bad.jsonl:1: not JSON"):
        load_eval_set([bad])
    with pytest.raises(TraceError, match="cannot read eval tasks"):
        load_eval_set([tmp_path / "missing.jsonl"])
