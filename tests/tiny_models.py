"""Tiny random-initialised models saved the way real checkpoints are, so adapters load them by their real path.

Every builder takes a directory, writes a checkpoint there and returns it; seeds are fixed so the
weights (and therefore the cache digests) are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.models.base import EmbedOutput, ModelAdapter
from benchmark.registry.schema import ModelEntry
from benchmark.structures import Sample

SMILES_CHARS = list("CNOSPFIBrcnosl()[]=#@+-\\/123456789%H")
AMINO_ACIDS = list("LAGVSERTIDPKQNFYMHWCXBUZO")
HIDDEN = 32


def entry(key: str, adapter: str, modality: str, checkpoint: str | None, **kw) -> ModelEntry:
    domain = {"smiles": "molecules", "text": "text", "protein": "protein", "atoms": "molecules"}[modality]
    return ModelEntry(key=key, name=key, family="test", modality=modality, domain=domain, adapter=adapter,
                      checkpoint=checkpoint, **kw)


def _char_tokenizer(out: Path, specials: dict[str, str], template: str) -> None:
    """A character-level fast tokenizer (covers every SMILES character) with a post-processing template."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    names = list(dict.fromkeys(specials.values()))
    vocab = {t: i for i, t in enumerate(names + SMILES_CHARS + list("abdefghijkmpqrtuvwxyz ADEGJKLMQRTUVWXYZ.,0"))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in names if t in template]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    fast.save_pretrained(out)


def bert(out: Path) -> Path:
    """A ChemBERTa-like encoder: [CLS] smiles [SEP]."""
    import torch
    from transformers import BertConfig, BertModel

    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    _char_tokenizer(out, specials, "[CLS] $A [SEP]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=128, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)
    return out


def gpt2(out: Path) -> Path:
    """A ChemGPT-like decoder without a pad token (the adapter must pad with eos)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    specials = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    _char_tokenizer(out, specials, "<s> $A")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=128, n_embd=HIDDEN, n_layer=2, n_head=2, n_positions=128,
                     bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(cfg).save_pretrained(out)
    return out


def qwen3(out: Path) -> Path:
    """A Qwen3-like causal LM saved with its LM head, as real LLM checkpoints are."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    specials = {"unk_token": "<unk>", "bos_token": "<|im_start|>", "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>"}
    _char_tokenizer(out, specials, "$A")
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=128, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256)
    Qwen3ForCausalLM(cfg).save_pretrained(out)
    return out


def esm2(out: Path) -> Path:
    """An ESM2-like protein encoder with the real ESM vocabulary and tokenizer class."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>"] + AMINO_ACIDS + [".", "-", "<null_1>", "<mask>"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    EsmTokenizer(str(out / "vocab.txt")).save_pretrained(out)
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=130, pad_token_id=1, mask_token_id=len(vocab) - 1,
                    position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(out)
    return out


def as_hub_cache(model_dir: Path, cache: Path, repo_id: str, commit: str = "0" * 40) -> Path:
    """Lay `model_dir` out as a Hugging Face hub cache entry: blobs named by sha256, snapshot symlinks."""
    from benchmark.models.base import file_digest

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        blob = repo / "blobs" / file_digest(f)
        blob.write_bytes(f.read_bytes())
        link = snap / f.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def molecules() -> list[Sample]:
    """A few molecules with 3D coordinates, SMILES and text (coordinates roughly right, good enough here)."""
    water = Sample("water", np.array([8, 1, 1]), np.array([[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]]),
                   smiles="O", text="water")
    methane = Sample("methane", np.array([6, 1, 1, 1, 1]),
                     np.array([[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                               [0.63, -0.63, -0.63]]), smiles="C", text="methane")
    ethanol = Sample("ethanol", np.array([6, 6, 8, 1, 1, 1, 1, 1, 1]),
                     np.array([[-1.17, -0.40, 0], [0.17, 0.36, 0], [1.18, -0.62, 0], [-1.25, -1.03, 0.89],
                               [-1.25, -1.03, -0.89], [-2.0, 0.31, 0], [0.25, 1.0, 0.88], [0.25, 1.0, -0.88],
                               [2.03, -0.15, 0]]), smiles="CCO", text="ethanol, a primary alcohol")
    benzene = Sample("benzene", None, None, smiles="c1ccccc1", text="benzene")
    return [water, methane, ethanol, benzene]


def proteins() -> list[Sample]:
    return [Sample("p1", sequence="MKTAYIAKQR"), Sample("p2", sequence="GSHMLEDPVAGQWLKDE"),
            Sample("p3", sequence="AC")]


class FakeAtomsAdapter(ModelAdapter):
    """A cheap deterministic atoms adapter, importable by `module:Class` from an isolated worker.

    Options: `fail` (raise in embed), `sleep` (seconds per batch), `weights` (a file that must exist).
    """

    feature_source = "hand-made geometric descriptors (test double)"

    def unavailable_reason(self) -> str | None:
        weights = self.options.get("weights")
        if weights and not Path(weights).is_file():
            return f"weights file {weights} not found; set 'checkpoint' or options.weights to it"
        return None

    def _load(self) -> None:
        self.scale = 1.0 / 3.0

    def embed(self, samples):
        import time

        if self.options.get("fail"):
            raise RuntimeError("boom from the fake adapter")
        time.sleep(float(self.options.get("sleep", 0)))
        feats, energies = [], []
        for s in samples:
            r = np.asarray(s.positions, dtype=np.float64)
            d = np.linalg.norm(r - r.mean(0), axis=1)
            z = np.asarray(s.numbers, dtype=np.float64)
            feats.append([np.sin(d).sum() * self.scale, np.exp(-d).mean(), (z * d).sum() / z.sum(), np.log1p(z).mean()])
            energies.append(-13.6 * z.sum() + np.cos(d).sum())
        return EmbedOutput(np.asarray(feats), np.asarray(energies))


def mace(out: Path) -> Path:
    """A two-layer MACE (8x0e+8x1o hidden, l_max 2) for H, C, N, O, pickled whole as MACE ships models."""
    from mace import modules  # before e3nn: mace lets e3nn 0.4 load its constants under torch >= 2.6
    import torch
    from e3nn import o3

    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=2, interaction_cls=block,
        interaction_cls_first=block, num_interactions=2, num_elements=4, hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([-13.6, -1029.0, -1485.0, -2042.0]),
        avg_num_neighbors=3.0, atomic_numbers=[1, 6, 7, 8], correlation=2, gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    ).double()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model, out / "tiny-mace.model")
    return out / "tiny-mace.model"


def transformed(sample: Sample, seed: int = 1, rotate: bool = True) -> Sample:
    """The same structure rotated, translated and with its atoms permuted (cell rotated along)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix() if rotate else np.eye(3)
    perm = rng.permutation(sample.n_atoms)
    pos = sample.positions[perm] @ rot.T + rng.normal(0, 3, 3)
    cell = None if sample.cell is None else np.asarray(sample.cell) @ rot.T
    return Sample(sample.id + "-t", sample.numbers[perm], pos, cell, sample.pbc, sample.charge, sample.smiles)


def crystal() -> Sample:
    """Rock-salt-like periodic C/N cell, small enough for any cutoff to see many images."""
    cell = np.eye(3) * 3.6
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5],
                     [0.5, 0.5, 0.5]])
    frac = frac + np.random.default_rng(3).normal(0, 0.01, frac.shape)
    return Sample("cn-crystal", np.array([6, 6, 6, 6, 7, 7, 7, 7]), frac @ cell, cell, True)


def uma(out: Path) -> Path:
    """A two-layer UMA-style eSCN-MD backbone (8 channels, lmax 2) with a direct energy head, saved as the
    `MLIPInferenceCheckpoint` fairchem ships, with an energy task for the omat and omol datasets."""
    import hydra
    import torch
    from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

    backbone = {"model": "fairchem.core.models.uma.escn_md.eSCNMDBackbone", "max_num_elements": 100,
                "sphere_channels": 8, "lmax": 2, "mmax": 2, "otf_graph": True, "max_neighbors": 30, "cutoff": 6.0,
                "edge_channels": 8, "num_distance_basis": 16, "direct_forces": True, "regress_forces": True,
                "num_layers": 2, "hidden_channels": 8, "dataset_list": ["omat", "omol"]}
    config = {"_target_": "fairchem.core.models.base.HydraModel", "backbone": backbone,
              "pass_through_head_outputs": True,
              "heads": {"energyandforcehead": {"module": "fairchem.core.models.uma.escn_md.MLP_EFS_Head"}}}
    task = {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task", "name": "energy", "level": "system",
            "property": "energy", "datasets": ["omat", "omol"],
            "out_spec": {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec", "dim": [1],
                         "dtype": "float32"},
            "normalizer": {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                           "mean": 0.0, "rmsd": 2.0}}
    torch.manual_seed(0)
    model = hydra.utils.instantiate(config)
    ema = torch.optim.swa_utils.AveragedModel(model)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = MLIPInferenceCheckpoint(model_config=config, model_state_dict=model.state_dict(),
                                   ema_state_dict=ema.state_dict(), tasks_config=[task])
    torch.save(ckpt, out / "tiny-uma.pt")
    return out / "tiny-uma.pt"


ORB_KWARGS = {"latent_dim": 16, "base_mlp_hidden_dim": 16, "head_mlp_hidden_dim": 16, "num_message_passing_steps": 2}


def orb(out: Path, conservative: bool = False) -> Path:
    """A two-step Orb v3 (direct or conservative) with 16 latents, saved as the state dict Orb ships."""
    import torch
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig

    torch.manual_seed(0)
    build = pretrained.orb_v3_conservative_architecture if conservative else pretrained.orb_v3_direct_architecture
    model = build(system_config=SystemConfig(radius=6.0, max_num_neighbors=20), **ORB_KWARGS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tiny-orb-{'conservative' if conservative else 'direct'}.ckpt"
    torch.save(model.state_dict(), path)
    return path


def mattersim(out: Path) -> Path:
    """A two-block M3GNet with 16 units, saved in MatterSim's checkpoint layout (model_name, model_args, model)."""
    import torch
    from mattersim.forcefield.m3gnet.m3gnet import M3Gnet

    torch.manual_seed(0)
    model = M3Gnet(num_blocks=2, units=16, max_l=2, max_n=3, cutoff=5.0, threebody_cutoff=4.0, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tiny-mattersim.pth"
    torch.save({"model_name": "m3gnet", "model_args": model.get_model_args(), "model": model.state_dict()}, path)
    return path
