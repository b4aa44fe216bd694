#!/usr/bin/env python3
"""Writes the SQuAD golden files from the references:

  tests/golden/squad_offsets.jsonl    HF BertTokenizerFast offsets (return_offsets_mapping=True)
                                      of every case of tests/golden/tokenizer_cases.jsonl, turned
                                      from code points into UTF-8 byte offsets
  tests/golden/squad_metric.txt       the official evaluate-v1.1.py (reproduced below) on
                                      prediction sets built by rules for the whole dev file:
                                      per-question EM / F1 for every 97th question and totals
  tests/golden/squad_metric_cases.jsonl  hand-made Unicode / punctuation / article cases
  tests/golden/squad_features.jsonl   Google run_squad.py windowing (reimplemented below on top
                                      of the HF tokenizer's ids and offsets) for ~50 dev
                                      questions and every question of tests/golden/squad_cases.json
  tests/golden/squad_features_mpnet.jsonl  the same questions with all-mpnet-base-v2's tokenizer
                                      (a --features-only run, below)
  tests/golden/squad_decode.jsonl     Google write_predictions' choice of span for pseudo-random
                                      logits (the same generator in the C test)

The official script is https://rajpurkar.github.io/SQuAD-explorer/ evaluate-v1.1.py (copies in
many repositories, e.g. rawmarshmellows/CS224n-Assignment4 utils/eval.py); its normalize_answer,
f1_score, exact_match_score, metric_max_over_ground_truths and evaluate are reproduced verbatim
below. Google's windowing: google-research/bert run_squad.py (convert_examples_to_features,
_check_is_max_context, _get_best_indexes, write_predictions).

The windows take the specials around question and context and the type ids from the
tokenizer's own pair template (build_inputs_with_special_tokens /
create_token_type_ids_from_sequences, checked against its post-processor on a real pair), and
leave max_seq - len(q) - num_special_tokens_to_add(pair=True) tokens to the context: BERT gives
Google's [CLS] q [SEP] c [SEP] with type ids 0 / 1 and max_seq - len(q) - 3; MPNet / RoBERTa
give <s> q </s></s> c </s> with type ids all 0 and max_seq - len(q) - 4. ctx_begin is the first
context token; every special has offsets -1 / -1 and max_ctx 0.

Run with the reference venv:
  .venv-ref/bin/python scripts/reference/gen-squad-golden.py [--data DIR] [--out DIR]
      every golden above but squad_features_mpnet.jsonl (BERT tokenizer of all-MiniLM-L6-v2)
  .venv-ref/bin/python scripts/reference/gen-squad-golden.py --model models/all-mpnet-base-v2 \
      --features-only squad_features_mpnet.jsonl
      only that features file, for the tokenizer of --model; the dev questions are still chosen
      by the windows of --select-model (default the BERT tokenizer), so both features files
      hold the same questions in the same order. Without --features-only another --model is
      refused: the other goldens are BERT's.
"""
import argparse
import json
import os
import random
import re
import string
import sys
from collections import Counter

import numpy as np
from transformers import AutoTokenizer

# ------------------------------------------------- official evaluate-v1.1.py (verbatim logic)


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    message = 'Unanswered question ' + qa['id'] + \
                              ' will receive score 0.'
                    print(message, file=sys.stderr)
                    continue
                ground_truths = list(map(lambda x: x['text'], qa['answers']))
                prediction = predictions[qa['id']]
                exact_match += metric_max_over_ground_truths(
                    exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(
                    f1_score, prediction, ground_truths)

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {'exact_match': exact_match, 'f1': f1}


# ------------------------------------------------------------ prediction sets (rules in C too)


def pred_rule(rule, qa, context):
    """The prediction of one question under a named rule; tests/test_squad.c has the same."""
    first, last = qa['answers'][0]['text'], qa['answers'][-1]['text']
    if rule == 'first':
        return first
    if rule == 'empty':
        return ''
    if rule == 'drop_first_word':  # everything after the first ' ', or '' without one
        i = first.find(' ')
        return first[i + 1:] if i >= 0 else ''
    if rule == 'decorated_last':  # articles, case and punctuation that normalisation removes
        # ASCII upper-casing only, so that the C test needs no Unicode upper()
        return 'The ' + ''.join(c.upper() if 'a' <= c <= 'z' else c for c in last) + ' (etc.)!'
    if rule == 'context_5':  # the context up to its fifth ' '
        return ' '.join(context.split(' ')[:5])
    raise ValueError(rule)


RULES = ['first', 'empty', 'drop_first_word', 'decorated_last', 'context_5']

# Hand-made cases: (prediction, gold answers). Python's lower() is full Unicode lowercasing
# (final sigma too), \b is Unicode-aware, split() splits on Unicode whitespace.
METRIC_CASES = [
    ("the cat", ["a cat"]),
    ("The Cat.", ["cat"]),
    ("an apple a day", ["apple day"]),
    ("theater", ["the ater"]),
    ("a_b", ["a b"]),
    ("A-B", ["ab"]),
    ("a\u00a0b", ["a b"]),
    ("a\u2003the\u3000b", ["a b"]),
    ("a\u200bb", ["a b"]),
    ("x\x1cy", ["x y"]),
    ("x\x85y", ["x y"]),
    ("\u00c9COLE", ["école"]),
    ("STRASSE", ["straße"]),
    ("\u0130stanbul", ["i\u0307stanbul"]),
    ("\u0130stanbul", ["istanbul"]),
    ("\u039f\u0394\u039f\u03a3", ["οδος"]),
    ("\u039f\u0394\u039f\u03a3", ["οδοσ"]),
    ("\u03a3\u039f\u03a3 \u03a3", ["σος σ"]),
    ("\u0391\u03a3'", ["ας"]),
    ("the\u0301 cat", ["cat"]),
    ("thé cat", ["cat"]),
    ("la\u00e9 an\u00e9", ["laé ané"]),
    ("\u00bfQu\u00e9?", ["qué"]),
    ("\u201cquoted\u201d", ["quoted"]),
    ("“quoted”", ["“quoted”"]),
    ("‘the’ end", ["end"]),
    ("1,000", ["1000"]),
    ("1 000", ["1000"]),
    ("$5.00", ["5 00", "500"]),
    ("the the the", ["the"]),
    ("", [""]),
    ("", ["a"]),
    ("a", [""]),
    ("   ", ["the"]),
    ("red red blue", ["red blue blue", "green"]),
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos", "Broncos"]),
    ("\u2160 \u2161", ["ⅰ ⅱ"]),
    ("a\u0663b an\u0663", ["a٣b"]),
    ("\uff34\uff28\uff25 cat", ["ｔｈｅ cat"]),
    ("ǅemal", ["ǆemal"]),
    ("naïve café", ["naive cafe"]),
    ("東京 the タワー", ["東京 タワー"]),
    ("\U0001d400 bold", ["𝐀 bold"]),
    ("a\tb\nc\rd\x0be\x0cf", ["a b c d e f"]),
]

# ------------------------------------------------------------- Google's windowing on HF tokens


_TEMPLATES = {}


def pair_template(tok):
    """The tokenizer's own pair template, read from what its post-processor does to a tiny
    pair: (prefix, middle, suffix) special ids around question and context, and the type id of
    every position as a function of the lengths. BERT: [CLS] q [SEP] c [SEP], types 0 / 1;
    MPNet / RoBERTa: <s> q </s></s> c </s>, types all 0."""
    if id(tok) in _TEMPLATES:
        return _TEMPLATES[id(tok)][1]
    e = tok('who', 'what', return_token_type_ids=True)
    ids, seq, typ = e['input_ids'], e.sequence_ids(), e['token_type_ids']
    q0 = seq.index(0)
    q1 = len(seq) - seq[::-1].index(0)
    c0 = seq.index(1)
    c1 = len(seq) - seq[::-1].index(1)
    assert all(x is None for x in seq[:q0] + seq[q1:c0] + seq[c1:]), seq
    pre, mid, suf = ids[:q0], ids[q1:c0], ids[c1:]
    assert len(pre) + len(mid) + len(suf) == tok.num_special_tokens_to_add(pair=True)
    tq, tc = typ[q0:q1], typ[c0:c1]
    assert len(set(tq)) == 1 and len(set(tc)) == 1, typ

    def types(nq, nc):
        return (typ[:q0] + [tq[0]] * nq + typ[q1:c0] + [tc[0]] * nc + typ[c1:])
    _TEMPLATES[id(tok)] = (tok, (pre, mid, suf, types))  # tok kept alive: id stays its own
    return pre, mid, suf, types


def features_of(tok, question, context, answer_start_cp, answer_text, max_seq=384,
                max_query=64, stride=128):
    """Google's convert_examples_to_features, with the answer's tokens found from the HF
    offsets (the context tokens overlapping its span) as include/petl.h documents (section "SQuAD v1.1").
    The specials around question and context and the type ids are the tokenizer's own
    (build_inputs_with_special_tokens / create_token_type_ids_from_sequences, checked against
    what its post-processor does to a real pair); Google's BERT-only [CLS] q [SEP] c [SEP] and
    max_seq - len(q) - 3 are the BERT case of this."""
    pre, mid, suf, types_of = pair_template(tok)
    q_ids = tok(question, add_special_tokens=False)['input_ids'][:max_query]
    enc = tok(context, add_special_tokens=False, return_offsets_mapping=True)
    c_ids, c_off = enc['input_ids'], enc['offset_mapping']
    # code points -> UTF-8 bytes
    pre_b = [0]
    for ch in context:
        pre_b.append(pre_b[-1] + len(ch.encode('utf-8')))
    c_off = [(pre_b[a], pre_b[b]) for a, b in c_off]
    n = len(c_ids)
    max_doc = max_seq - len(q_ids) - tok.num_special_tokens_to_add(pair=True)
    spans = []
    s = 0
    while True:
        l = min(n - s, max_doc)
        spans.append((s, l))
        if s + l >= n:
            break
        s += min(l, stride)
    tok_s = tok_e = -1
    if answer_text is not None:
        ab = pre_b[answer_start_cp]
        ae = ab + len(answer_text.encode('utf-8'))
        for t, (b, e) in enumerate(c_off):
            if e > ab and b < ae:
                if tok_s < 0:
                    tok_s = t
                tok_e = t

    def is_max(cur, pos):
        best, best_i = None, None
        for i, (st, ln) in enumerate(spans):
            end = st + ln - 1
            if pos < st or pos > end:
                continue
            score = min(pos - st, end - pos) + 0.01 * ln
            if best is None or score > best:
                best, best_i = score, i
        return cur == best_i

    feats = []
    for w, (st, ln) in enumerate(spans):
        cw = c_ids[st:st + ln]
        ids = tok.build_inputs_with_special_tokens(q_ids, cw)
        if hasattr(tok, 'create_token_type_ids_from_sequences'):
            types = tok.create_token_type_ids_from_sequences(q_ids, cw)
        else:
            types = types_of(len(q_ids), ln)
        cb = len(pre) + len(q_ids) + len(mid)  # the first context token
        ns = len(suf)
        assert ids == pre + q_ids + mid + cw + suf, (ids, pre, mid, suf)
        assert types == types_of(len(q_ids), ln), types
        assert len(ids) <= max_seq
        mc = [0] * cb + [int(is_max(w, st + i)) for i in range(ln)] + [0] * ns
        offs = [[-1, -1]] * cb + [list(c_off[st + i]) for i in range(ln)] + [[-1, -1]] * ns
        sp = ep = -1
        if answer_text is not None:
            sp = ep = 0
            if tok_s >= 0 and tok_s >= st and tok_e <= st + ln - 1:
                sp, ep = tok_s - st + cb, tok_e - st + cb
        feats.append(dict(window=w, ids=ids, type_ids=types, max_ctx=mc, offsets=offs,
                          ctx_begin=cb, ctx_len=ln, start=sp, end=ep))
    return feats


# -------------------------------------------------------------------------------- decoding

MASK64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def logits_for(seed, n):
    """n pseudo-random float32 logits in [-10, 10) in steps of 1/1024 (exact in float32);
    the C test draws the same."""
    st = seed
    out = []
    for _ in range(n):
        st, z = splitmix64(st)
        out.append(float(np.float32(((z >> 40) % 20480) / 1024.0 - 10.0)))
    return out


def get_best_indexes(logits, n_best_size):
    index_and_score = sorted(enumerate(logits), key=lambda x: x[1], reverse=True)
    return [i for i, _ in index_and_score[:n_best_size]]


def decode(feats, starts, ends, n_best=20, max_answer=30):
    """Google's write_predictions up to the best prelim prediction, answer text from the
    offsets."""
    prelim = []
    for fi, f in enumerate(feats):
        cb, ce = f['ctx_begin'], f['ctx_begin'] + f['ctx_len']
        for s in get_best_indexes(starts[fi], n_best):
            for e in get_best_indexes(ends[fi], n_best):
                if s < cb or s >= ce or e < cb or e >= ce:
                    continue
                if not f['max_ctx'][s]:
                    continue
                if e < s or e - s + 1 > max_answer:
                    continue
                prelim.append((starts[fi][s] + ends[fi][e], fi, s, e))
    prelim = sorted(prelim, key=lambda x: x[0], reverse=True)
    if not prelim:
        return None
    score, fi, s, e = prelim[0]
    return score, feats[fi]['offsets'][s][0], feats[fi]['offsets'][e][1]


# -------------------------------------------------------------------------------- features


def write_features(tok, sel_tok, dev, out_dir, name):
    """Writes the features of the chosen dev questions and every crafted case to name in out;
    returns the chosen rows, the crafted rows and the features function of tok. sel_tok's
    windows choose the questions (for tok == sel_tok as before)."""
    rows = []  # (source, question, context, answer_start, answer_text, qid)
    for art in dev:
        for para in art['paragraphs']:
            for qa in para['qas']:
                a0 = qa['answers'][0]
                rows.append(('dev', qa['question'], para['context'], a0['answer_start'],
                             a0['text'], qa['id']))
    with open(os.path.join(out_dir, 'squad_cases.json'), encoding='utf-8') as f:
        cases = json.load(f)['data']
    case_rows = []
    for art in cases:
        for para in art['paragraphs']:
            for qa in para['qas']:
                a0 = qa['answers'][0] if qa['answers'] else None
                case_rows.append(('cases', qa['question'], para['context'],
                                  a0['answer_start'] if a0 else 0, a0['text'] if a0 else None,
                                  qa['id']))
    rng = random.Random(7)
    feats_of = {}

    def feats_with(t, r):
        if (id(t), r[5]) not in feats_of:
            feats_of[(id(t), r[5])] = features_of(t, r[1], r[2], r[3], r[4])
        return feats_of[(id(t), r[5])]

    def feats(r):
        return feats_with(tok, r)

    def sel_feats(r):
        return feats_with(sel_tok, r)

    chosen = rows[:8] + rng.sample(rows, 12)
    # the longest contexts (most windows), answers in two windows, at a window edge
    by_ctx = sorted(range(len(rows)), key=lambda i: -len(rows[i][2]))[:200]
    multi = [rows[i] for i in by_ctx if len(sel_feats(rows[i])) > 3][:6]
    two, edge = [], []
    for i in by_ctx:
        fs = sel_feats(rows[i])
        inside = [f for f in fs if f['start'] > 0]
        if len(inside) >= 2 and len(two) < 8:
            two.append(rows[i])
        elif any(f['start'] == f['ctx_begin'] or f['end'] == f['ctx_begin'] + f['ctx_len'] - 1
                 for f in inside) and len(edge) < 8:
            edge.append(rows[i])
    chosen += multi + two + edge
    print('features: %d dev questions (%d with > 3 windows, %d in two windows, %d at an edge)'
          ' + %d crafted' % (len(chosen), len(multi), len(two), len(edge), len(case_rows)))
    seen = set()
    nq = nf = 0
    with open(os.path.join(out_dir, name), 'w', encoding='utf-8', newline='\n') as out:
        for r in chosen + case_rows:
            if r[5] in seen:
                continue
            seen.add(r[5])
            nq += 1
            for f in feats(r):
                nf += 1
                # compact: type ids and max-context flags as digit strings, offsets of the
                # context tokens only, flattened (every other position is -1 / -1)
                cb, ln = f['ctx_begin'], f['ctx_len']
                f = dict(f, source=r[0], id=r[5],
                         type_ids=''.join(map(str, f['type_ids'])),
                         max_ctx=''.join(map(str, f['max_ctx'])),
                         offsets=[v for o in f['offsets'][cb:cb + ln] for v in o])
                out.write(json.dumps(f, ensure_ascii=True, separators=(',', ':')) + '\n')
    print('%s: %d features of %d questions' % (name, nf, nq))
    return chosen, case_rows, feats


# ------------------------------------------------------------------------------------ main


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    default_model = os.path.join(root, 'models', 'all-MiniLM-L6-v2')
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default=default_model,
                    help='the tokenizer (default: the BERT one of all-MiniLM-L6-v2)')
    ap.add_argument('--data', default=os.path.join(root, '..', 'shared', 'data'))
    ap.add_argument('--out', default=os.path.join(root, 'tests', 'golden'))
    ap.add_argument('--features-only', metavar='NAME',
                    help='write only the features, to NAME in --out (e.g. '
                    'squad_features_mpnet.jsonl); the questions are still chosen with '
                    '--select-model so that every features file has the same ones')
    ap.add_argument('--select-model', default=default_model,
                    help='the tokenizer whose windows choose the dev questions')
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    if not args.features_only and (os.path.realpath(args.model) != os.path.realpath(default_model)
                                   or os.path.realpath(args.select_model)
                                   != os.path.realpath(default_model)):
        ap.error('the full set of goldens is the BERT one: with another --model / '
                 '--select-model pass --features-only NAME')
    pre, mid, suf, _ = pair_template(tok)
    print('pair template: %s q %s c %s, type ids %s' % (pre, mid, suf,
                                                          pair_template(tok)[3](1, 1)))
    with open(os.path.join(args.data, 'squad', 'dev-v1.1.json'), encoding='utf-8') as f:
        dev = json.load(f)['data']
    if args.features_only:
        sel_tok = AutoTokenizer.from_pretrained(args.select_model)
        write_features(tok, sel_tok, dev, args.out, args.features_only)
        return

    # 1. offsets of the tokenizer hard cases
    n = 0
    with open(os.path.join(args.out, 'tokenizer_cases.jsonl'), encoding='utf-8') as f, \
            open(os.path.join(args.out, 'squad_offsets.jsonl'), 'w', encoding='utf-8',
                 newline='\n') as out:
        for line in f:
            c = json.loads(line)
            a, b, ml = c['text_a'], c.get('text_b'), c['max_len']
            try:
                a.encode('utf-8')
                if b is not None:
                    b.encode('utf-8')
            except UnicodeEncodeError:
                continue  # lone surrogates: not representable in UTF-8
            kw = dict(return_offsets_mapping=True)
            if ml > 0:
                kw.update(truncation=True, max_length=ml)
            e = tok(a, b, **kw)
            seq = e.sequence_ids()
            pa = [0]
            for ch in a:
                pa.append(pa[-1] + len(ch.encode('utf-8')))
            pb = [0]
            for ch in b or '':
                pb.append(pb[-1] + len(ch.encode('utf-8')))
            offs = []
            for (x, y), sid in zip(e['offset_mapping'], seq):
                p = pa if sid == 0 else pb
                offs.append([0, 0] if sid is None else [p[x], p[y]])
            c['offsets'] = offs
            c['input_ids'] = e['input_ids']
            c.pop('token_type_ids', None)
            out.write(json.dumps(c, ensure_ascii=True) + '\n')
            n += 1
    print('offsets: %d cases' % n)

    # 2. the metric
    with open(os.path.join(args.out, 'squad_metric.txt'), 'w', encoding='utf-8',
              newline='\n') as out:
        out.write('# rule question_index em f1 (every 97th question), then: rule total em f1\n')
        for rule in RULES:
            preds = {}
            qi = 0
            for art in dev:
                for para in art['paragraphs']:
                    for qa in para['qas']:
                        p = pred_rule(rule, qa, para['context'])
                        preds[qa['id']] = p
                        if qi % 97 == 0:
                            gts = [x['text'] for x in qa['answers']]
                            em = metric_max_over_ground_truths(exact_match_score, p, gts)
                            f1 = metric_max_over_ground_truths(f1_score, p, gts)
                            out.write('%s %d %d %.17g\n' % (rule, qi, int(em), f1))
                        qi += 1
            r = evaluate(dev, preds)
            out.write('%s total %.17g %.17g\n' % (rule, r['exact_match'], r['f1']))
            print('metric %s: EM %.4f F1 %.4f' % (rule, r['exact_match'], r['f1']))
    with open(os.path.join(args.out, 'squad_metric_cases.jsonl'), 'w', encoding='utf-8',
              newline='\n') as out:
        for p, gts in METRIC_CASES:
            em = metric_max_over_ground_truths(exact_match_score, p, gts)
            f1 = metric_max_over_ground_truths(f1_score, p, gts)
            out.write(json.dumps(dict(pred=p, golds=gts, em=int(em), f1=f1,
                                      norm=normalize_answer(p)), ensure_ascii=True) + '\n')

    # 3. features: a sample of dev questions and every crafted case
    chosen, case_rows, feats = write_features(tok, tok, dev, args.out, 'squad_features.jsonl')

    # 4. decoding: pseudo-random logits for the chosen questions' windows
    with open(os.path.join(args.out, 'squad_decode.jsonl'), 'w', encoding='utf-8',
              newline='\n') as out:
        done = set()
        for k, r in enumerate(chosen + case_rows):
            if r[5] in done:
                continue
            done.add(r[5])
            fs = feats(r)
            seed = 1000 + k
            starts = [logits_for(seed * 64 + 2 * j, 384) for j in range(len(fs))]
            ends = [logits_for(seed * 64 + 2 * j + 1, 384) for j in range(len(fs))]
            best = decode(fs, starts, ends)
            d = dict(source=r[0], id=r[5], seed=seed)
            if best is None:
                d.update(found=False)
            else:
                d.update(found=True, score=best[0], begin=best[1], end=best[2],
                         text=r[2].encode('utf-8')[best[1]:best[2]].decode('utf-8'))
            out.write(json.dumps(d, ensure_ascii=True) + '\n')


if __name__ == '__main__':
    main()
