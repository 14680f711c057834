"""RWKU's two protocols: where answers stop (on a byte-level BPE tokenizer and on one whose
vocabulary has the newline as a key), how many BOS a prompt gets, and the pooled "All" checked on
the RWKU paper's own tables."""

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from benchmarks import inference, rwku
from benchmarks import rwku_utility as U
from unlearn.models import TINY_CHAT_TEMPLATE, train_tiny_tokenizer

PROMPT = "Please briefly answer the following question.\nQuestion: Where was he born?\nAnswer:"
SCRIPT = "Sure!\nPortland"  # a preface line, then the answer, as instruction models often write
ANSWER = "Portland"


def byte_level_tokenizer():
    """A GPT-2 style byte-level BPE, trained here: the newline byte is stored as "Ċ"."""
    return train_tiny_tokenizer([PROMPT + " " + SCRIPT] * 3, vocab_size=300)


def newline_key_tokenizer():
    """A word-level vocabulary in which "\\n" is itself a key, with an unknown token."""
    pieces = pre_tokenizers.Split(Regex(r"\n| ?[A-Za-z]+|[^A-Za-z\s]| "), behavior="isolated")
    words = sorted({w for text in (PROMPT, SCRIPT) for w, _ in pieces.pre_tokenize_str(text)})
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pieces, decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def chain_model(tokenizer, prompt_ids: list[int], script_ids: list[int]) -> LlamaForCausalLM:
    """A one-layer Llama whose greedy next token depends on the current token only: the prompt's last
    token leads to the script's first, each script token to the next, the last one to EOS."""
    chain = [prompt_ids[-1], *script_ids]
    assert len(set(chain)) == len(chain), tokenizer.convert_ids_to_tokens(chain)
    size = len(tokenizer)
    config = LlamaConfig(vocab_size=size, hidden_size=size, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=128,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    head = torch.zeros(size, size)  # (V, H): logits of token j = head[j, current token] (embeddings one-hot)
    head[tokenizer.eos_token_id] = 0.5
    for current, following in zip(chain, [*script_ids, tokenizer.eos_token_id]):
        head[following, current] = 1.0
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(size))
        model.model.layers[0].self_attn.o_proj.weight.zero_()  # the layer adds nothing to the residual
        model.model.layers[0].mlp.down_proj.weight.zero_()
        model.lm_head.weight.copy_(head)
    return model


def answer_under(tokenizer, protocol: str) -> str:
    prompt = tokenizer(PROMPT)["input_ids"]
    model = chain_model(tokenizer, prompt, tokenizer(SCRIPT, add_special_tokens=False)["input_ids"])
    return inference.generate(model, tokenizer, [prompt], max_new_tokens=rwku.MAX_NEW_TOKENS,
                              **rwku.stop_for(tokenizer, protocol))[0]


def test_byte_level_bpe_paper_runs_past_the_newline_clean_cuts():
    tokenizer = byte_level_tokenizer()
    assert "\n" not in tokenizer.get_vocab() and "Ċ" in tokenizer.get_vocab()
    official = [tokenizer.convert_tokens_to_ids(" \n"), tokenizer.convert_tokens_to_ids("\n")]
    assert official == [None, None]  # RWKU's lookup finds nothing, so no newline stop
    assert U.official_stop_ids(tokenizer) == () and rwku.stop_for(tokenizer, "paper") == {
        "stop": (), "stop_token_ids": ()}
    assert answer_under(tokenizer, "paper") == SCRIPT  # scored on the whole text
    assert rwku.recall(answer_under(tokenizer, "paper"), ANSWER) == 100.0
    assert answer_under(tokenizer, "clean") == "Sure!"  # cut at the first newline
    assert rwku.recall(answer_under(tokenizer, "clean"), ANSWER) == 0.0


def test_newline_in_the_vocabulary_stops_in_both_protocols():
    tokenizer = newline_key_tokenizer()
    official = [tokenizer.convert_tokens_to_ids(" \n"), tokenizer.convert_tokens_to_ids("\n")]
    assert official == [tokenizer.unk_token_id, tokenizer.get_vocab()["\n"]]  # " \n" is unknown: its id
    assert U.official_stop_ids(tokenizer) == tuple(official)
    assert tokenizer.decode(tokenizer(SCRIPT, add_special_tokens=False)["input_ids"]) == SCRIPT
    assert answer_under(tokenizer, "paper") == "Sure!" == answer_under(tokenizer, "clean")
    assert rwku.recall(answer_under(tokenizer, "paper"), ANSWER) == 0.0


@pytest.mark.parametrize("template_bos, adds_bos, paper, clean", [
    (True, True, 2, 1),    # Llama-3: the template writes BOS and the tokenizer adds one (RWKU's double BOS)
    (False, True, 1, 1),   # a template without BOS: the tokenizer's one in both
    (False, False, 0, 0),  # a tokenizer that uses no BOS (SmolLM2, Qwen): none in either
])
def test_bos_count(template_bos, adds_bos, paper, clean):
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = TINY_CHAT_TEMPLATE if template_bos else TINY_CHAT_TEMPLATE.replace("{{ bos_token }}", "")
    if not adds_bos:
        tokenizer.backend_tokenizer.post_processor = None
    prompt = U.chat_prompt(tokenizer, "Question: Where was he born?\n", "Answer:")
    for protocol, count in (("paper", paper), ("clean", clean)):
        ids = U.encode(tokenizer, [prompt], protocol)[0]
        assert ids.count(tokenizer.bos_token_id) == count and ids[:count] == [tokenizer.bos_token_id] * count


# The RWKU paper (Jin et al. 2024): Table 3's probe counts and the level scores of Tables 1-2
# (Llama-3-8B-Instruct, then Phi-3-mini-4k-instruct): forget FB QA AA All | neighbour FB QA All.
FORGET_COUNTS = {"FB": 3268, "QA": 2879, "AA": 6984}
NEIGHBOUR_COUNTS = {"FB": 5846, "QA": 5533}
TABLES = """
Before 85.9 76.4 77.7 79.6 95.6 85.3 90.7 | ICU 26.2 1.9 10.3 12.8 65.0 46.5 55.7
RepE 29.8 33.6 37.8 34.8 46.2 38.8 42.6 | GA*(Full) 40.7 36.5 43.7 41.4 68.6 68.6 68.1
GA*(LoRA) 70.3 65.6 67.8 68.2 80.6 75.5 77.5 | GA(Full) 39.1 31.6 46.7 41.9 84.6 73.6 79.0
GA(LoRA) 67.0 53.2 61.8 61.3 90.1 80.4 85.3 | DPO(Full) 46.3 38.5 41.6 41.9 59.2 51.3 55.2
DPO(LoRA) 75.3 65.4 68.6 69.5 90.0 81.5 85.6 | NPO(Full) 33.4 21.0 24.8 26.2 76.0 69.9 72.6
NPO(LoRA) 75.1 64.3 69.0 69.7 91.3 82.2 86.7 | RT(Full) 72.7 13.4 22.8 33.1 86.9 45.6 67.4
RT(LoRA) 85.4 49.6 53.2 60.5 87.3 74.1 81.9
phi3:Before 47.1 47.4 55.8 51.8 56.2 61.4 58.3 | phi3:ICU 45.2 34.6 32.2 36.0 52.9 56.1 54.0
phi3:GA*(Full) 37.1 37.9 46.4 42.2 51.8 59.2 54.6 | phi3:GA*(LoRA) 46.2 47.5 55.8 51.6 55.1 61.2 57.4
phi3:GA(Full) 17.8 14.3 26.3 21.6 49.7 51.7 50.2 | phi3:GA(LoRA) 40.5 37.8 49.5 44.8 55.2 60.1 56.7
phi3:DPO(Full) 25.0 19.1 29.9 26.6 41.4 39.6 40.1 | phi3:DPO(LoRA) 44.1 45.6 54.9 50.3 56.2 60.5 57.7
phi3:NPO(Full) 22.5 16.9 27.3 23.8 50.5 53.6 51.3 | phi3:RT(Full) 47.6 46.6 55.4 51.7 57.2 61.5 58.8
"""
ROWS = [(row.split()[0], [float(v) for v in row.split()[1:]])
        for line in TABLES.strip().splitlines() for row in line.split("|")]


def probes(levels: dict, counts: dict) -> dict:
    """Per level, its published mean repeated once per probe (what the per-probe scores average to)."""
    return {level: [mean] * counts[level] for level, mean in levels.items()}


@pytest.mark.parametrize("name, values", ROWS, ids=[name for name, _ in ROWS])
def test_pooled_all_reproduces_the_papers_tables(name, values):
    fb, qa, aa, forget_all, nfb, nqa, neighbour_all = values
    forget = rwku.aggregate(probes({"FB": fb, "QA": qa, "AA": aa}, FORGET_COUNTS))
    assert forget["FB"] == pytest.approx(fb) and forget["AA"] == pytest.approx(aa)
    # printed to one decimal in the paper, so compared at one decimal
    assert abs(round(forget["All"], 1) - forget_all) <= 0.4 + 1e-9
    # the neighbour levels are nearly equal in size, so pooling barely moves their All; the paper
    # averaged per-target values over 100 targets whose counts it does not print: within 1.0 here
    neighbour = rwku.aggregate(probes({"FB": nfb, "QA": nqa}, NEIGHBOUR_COUNTS))
    assert abs(round(neighbour["All"], 1) - neighbour_all) <= 1.0 + 1e-9


def test_the_plain_mean_of_levels_does_not():
    misses = {name: abs((v[0] + v[1] + v[2]) / 3 - v[3]) for name, v in ROWS}
    assert len(ROWS) == 23 and max(misses.values()) == pytest.approx(3.2, abs=0.01)  # RT(Full): 36.3 vs 33.1
    assert sum(miss > 0.4 + 1e-9 for miss in misses.values()) == 16
    assert misses["Before"] == pytest.approx(0.4)  # 80.0 against the 79.6 users compare with


def test_aggregate_pools_probes_and_checks_levels():
    out = rwku.aggregate({"FB": [1.0, 1.0, 1.0], "QA": [0.0]})
    assert out == {"FB": 1.0, "QA": 0.0, "All": 0.75}  # the plain mean of the levels would be 0.5
    with pytest.raises(ValueError, match="unknown level 'All'; allowed: FB, QA, AA"):
        rwku.aggregate({"All": [1.0]})
    with pytest.raises(ValueError, match="no scores given"):
        rwku.aggregate({"FB": []})
