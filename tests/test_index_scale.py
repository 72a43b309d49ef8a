"""Training sets of millions (issue 20), at a size a test can afford: a compressed index that answers as the flat
one does, folders added without rebuilding, caption-matched candidates and embeddings made by clip-retrieval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inspector.cli import main
from inspector.training_index import TrainingIndex, build_index
from inspector.training_index.perturb import PERTURBATIONS

SIZE = 32


def picture(rng: np.random.Generator, side: int = 48) -> Image.Image:
    """A cloudy colour field (natural images' 1/f spectrum, roughly) with a shape or two on it."""
    field = np.zeros((side, side, 3))
    amp, g = 1.0, 2
    while g <= side // 2:
        grid = rng.standard_normal((g, g, 3))
        field += amp * np.asarray(Image.fromarray(((grid - grid.min()) / np.ptp(grid) * 255).astype(np.uint8))
                                  .resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
        amp, g = amp * 0.55, g * 2
    field = (field - field.mean()) / (field.std() + 1e-9) * rng.uniform(0.1, 0.25) + rng.uniform(0.25, 0.75, 3)
    im = Image.fromarray((np.clip(field, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = (int(v) for v in rng.integers(-8, side - 8, 2))
        x1, y1 = x0 + int(rng.integers(8, 30)), y0 + int(rng.integers(8, 30))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def write_pictures(folder: Path, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{seed:02d}-{i:04d}.png"
        picture(rng).save(path)
        paths.append(path)
    return paths


def near_copies(paths: list[Path], per_kind: int, seed: int) -> tuple[list[np.ndarray], list[Path]]:
    """``per_kind`` near copies per perturbation (JPEG, crop, shift, noise, colour) of randomly chosen images."""
    rng = np.random.default_rng(seed)
    queries, sources = [], []
    for perturb in PERTURBATIONS.values():
        for i in rng.choice(len(paths), per_kind, replace=False):
            queries.append(perturb(np.asarray(Image.open(paths[i]).convert("RGB")), rng))
            sources.append(paths[i])
    return queries, sources


def answers(index: TrainingIndex, queries: list[np.ndarray]) -> list[list[tuple[str, float, float]]]:
    return [[(n.image_sha256, round(n.l2, 9), round(n.tiled_l2, 9)) for n in found]
            for found in index.query(queries, k=4)]


@pytest.fixture(scope="module")
def flat_and_compressed(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """2,000 pictures indexed flat, and the same index finished again as a compressed one."""
    root = tmp_path_factory.mktemp("scale")
    paths = write_pictures(root / "training", 2000, seed=1)
    build_index(root / "training", root / "flat", comparison_size=SIZE, workers=1, chunk_size=256)
    shutil.copytree(root / "flat", root / "compressed")
    # Resuming with a threshold below the size finishes the same rows as a compressed index (nothing is decoded).
    build_index(root / "training", root / "compressed", resume=True, compressed_above=1000, workers=1)
    return root / "flat", root / "compressed", paths


@pytest.mark.slow
def test_a_compressed_index_records_its_codes_and_the_pool_that_keeps_near_copies(flat_and_compressed):
    flat, compressed, _ = flat_and_compressed
    manifest = json.loads((compressed / "manifest.json").read_text(encoding="utf-8"))
    record = manifest["faiss"]
    assert manifest["format_version"] == 2 and manifest["compression"]["compressed_above"] == 1000
    assert record["compressed"] and record["factory"].startswith("PCAR64,IVF") and record["code_bytes"] <= 32
    calibration = record["calibration"]
    assert calibration["recall"] >= 0.99 and calibration["queries"] == 500
    assert len(calibration["perturbations"]) == 5
    assert record["pool"] == calibration["pool"] >= 50 and record["nprobe"] == calibration["nprobe"] >= 1
    assert (compressed / "features.trained.faiss").is_file()
    assert json.loads((flat / "manifest.json").read_text(encoding="utf-8"))["faiss"]["exact"] is True
    import faiss

    with TrainingIndex.open(compressed) as index:
        lists = faiss.extract_index_ivf(index._faiss).invlists
        assert isinstance(faiss.downcast_InvertedLists(lists), faiss.OnDiskInvertedLists)  # memory-mapped
        assert index.info()["faiss"]["compressed"]


@pytest.mark.slow
def test_the_compressed_index_returns_the_flat_indexs_four_nearest_for_near_copies(flat_and_compressed):
    flat, compressed, paths = flat_and_compressed
    queries, sources = near_copies(paths, per_kind=20, seed=7)
    with TrainingIndex.open(flat) as a, TrainingIndex.open(compressed) as b:
        exact, squeezed = answers(a, queries), answers(b, queries)
        found = [any(n.source == str(src) for n in nb) for src, nb in zip(sources, b.query(queries), strict=True)]
    assert squeezed == exact
    assert sum(found) >= 0.99 * len(queries)


@pytest.mark.slow
def test_adding_folders_twice_equals_one_build_over_all_of_them(tmp_path):
    root = tmp_path / "training"
    a = write_pictures(root / "a", 150, seed=2)
    b = write_pictures(root / "b", 150, seed=3)
    write_pictures(root / "c", 150, seed=4)
    for i in range(5):  # exact duplicates across the folders and within the last one
        shutil.copy(a[i], root / "b" / f"copy-of-a-{i}.png")
        shutil.copy(b[i], root / "c" / f"copy-of-b-{i}.png")
        shutil.copy(b[i], root / "c" / f"another-copy-of-b-{i}.png")
    once = build_index(root, tmp_path / "once", comparison_size=SIZE, workers=1, compressed_above=200)
    build_index(root / "a", tmp_path / "grown", comparison_size=SIZE, workers=1, compressed_above=200)
    assert main(["index", "build", str(root / "b"), "--add-to", str(tmp_path / "grown"), "--workers", "1"]) == 0
    grown_manifest = json.loads((tmp_path / "grown" / "manifest.json").read_text(encoding="utf-8"))
    assert grown_manifest["faiss"]["training"]["images_at_training"] == 300  # compressed when it passed 200
    last = build_index(root / "c", tmp_path / "grown", add_to=True, workers=1)
    grown_manifest = json.loads((tmp_path / "grown" / "manifest.json").read_text(encoding="utf-8"))
    assert last.added and last.feature_index["trained_now"] is False  # encoded with the earlier training
    assert grown_manifest["faiss"]["training"]["images_at_training"] == 300
    assert grown_manifest["sources"] == [str(root / "a"), str(root / "b"), str(root / "c")]
    assert (last.unique_images, last.sources, last.duplicate_sources) == (once.unique_images, once.sources,
                                                                         once.duplicate_sources) == (450, 465, 15)
    assert last.content_hash == once.content_hash
    queries, _ = near_copies(sorted(root.rglob("*.png")), per_kind=6, seed=11)
    with TrainingIndex.open(tmp_path / "once") as x, TrainingIndex.open(tmp_path / "grown") as y:
        assert x.info()["duplicated_images"] == y.info()["duplicated_images"] == 10
        counts = [{r["sha256"]: (r["duplicate_count"], r["id"]) for r in map(i.item, range(1, 451))} for i in (x, y)]
        assert counts[0] == counts[1]
        assert answers(x, queries) == answers(y, queries)
        assert x.caption_count() == y.caption_count() == 450 + 15  # caption tables: every file name's caption
    assert "+" in y.identity()["source"]


def test_a_caption_matched_image_is_compared_exactly_however_far_its_features(tmp_path, capsys):
    src = tmp_path / "training"
    src.mkdir()
    rng = np.random.default_rng(5)
    base = np.asarray(picture(rng), dtype=np.float64)
    for i in range(70):  # many near twins of the query: they fill every feature candidate
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(src / f"twin-{i:02d}.png")
    far = Image.new("RGB", (48, 48), (250, 20, 200))
    far.save(src / "lighthouse.png")
    (src / "lighthouse.txt").write_text("The crimson lighthouse at dawn", encoding="utf-8")
    build_index(src, tmp_path / "index", comparison_size=SIZE, workers=1)
    query = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(query).save(tmp_path / "generation.png")
    prompt = "the crimson lighthouse at dawn"
    with TrainingIndex.open(tmp_path / "index") as index:
        lighthouse = next(i for i in range(1, len(index) + 1) if index.item(i)["caption"].startswith("The crimson"))
        [plain] = index.candidates(query, k=1)
        [with_prompt] = index.candidates(query, k=1, prompts=prompt)
        [close] = index.candidates(query, k=1, prompts="crimson lighthouse at dawn")
        [other] = index.candidates(query, k=1, prompts="a blue bicycle")
        [neighbours] = index.query(query, k=1, prompts=prompt)
        [compared] = [index.compare(query, with_prompt.by_caption)]
    assert lighthouse not in plain.ids and len(plain.ids) == 50  # 50 twins nearer by feature
    assert lighthouse in with_prompt.ids and lighthouse in with_prompt.by_caption
    assert lighthouse not in with_prompt.by_feature
    assert with_prompt.captions == ["The crimson lighthouse at dawn"]
    assert lighthouse in close.by_caption and lighthouse not in other.ids
    assert neighbours[0].item_id != lighthouse  # still the nearest by pixels: the caption only adds a comparison
    assert compared[0].item_id == lighthouse and compared[0].tiled_l2 > 0.3
    assert main(["index", "query", str(tmp_path / "index"), str(tmp_path / "generation.png"), "--prompt", prompt,
                 "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["matching_captions"] == ["The crimson lighthouse at dawn"]
    assert [n["item_id"] for n in result["caption_matched"]] == [lighthouse]
    assert result["caption_matched"][0]["tiled_l2"] == pytest.approx(compared[0].tiled_l2)


def write_clip_retrieval(folder: Path, rows: list[dict], embeddings: np.ndarray, layout: str = "") -> Path:
    """What ``clip-retrieval inference`` writes: img_emb/img_emb_0.npy beside metadata/metadata_0.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = folder / layout if layout else folder
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    np.save(root / "img_emb" / "img_emb_0.npy", embeddings.astype(np.float16))
    pq.write_table(pa.Table.from_pylist(rows), root / "metadata" / "metadata_0.parquet")
    return folder


def test_clip_retrieval_embeddings_are_the_semantic_signal_with_their_urls_and_captions(tmp_path, capsys,
                                                                                       monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from inspector.training_index.decode import canonical_uint8
    from inspector.training_index.semantic import SemanticModel

    clip = tmp_path / "tiny-clip"
    torch.manual_seed(0)
    transformers.CLIPModel(transformers.CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=8)).save_pretrained(clip)
    paths = write_pictures(tmp_path / "training", 12, seed=6)
    model = SemanticModel.load(clip)
    emb = model.embed(np.stack([canonical_uint8(Image.open(p), model.input_size) for p in paths]))
    # Rows as clip-retrieval writes them: files found by path, webdataset-style keys, and one unknown image.
    rows = [{"image_path": str(p) if i % 2 == 0 else p.stem, "url": f"https://example.org/img/{i}.png",
             "caption": f"a cloudy picture number {i}", "key": p.stem} for i, p in enumerate(paths)]
    rows.append({"image_path": "not-indexed", "url": "https://example.org/gone.png", "caption": "gone",
                 "key": "not-indexed"})
    emb = np.concatenate([emb, np.eye(1, emb.shape[1], dtype=np.float32)])
    folder = write_clip_retrieval(tmp_path / "clip-out", rows, emb, layout="embeddings")
    assert main(["index", "build", str(tmp_path / "training"), "--out", str(tmp_path / "index"), "--size", "32",
                 "--workers", "1", "--embeddings", str(folder), "--embeddings-model", str(clip)]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text(encoding="utf-8"))
    semantic = manifest["semantic"]
    assert semantic["source"] == "clip-retrieval" and semantic["matched_rows"] == 12 and semantic["rows"] == 13
    assert semantic["images_without_embedding"] == 0 and semantic["note"] is None
    assert main(["index", "query", str(tmp_path / "index"), str(paths[3]), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    first = result["neighbours"][0]
    assert first["url"] == "https://example.org/img/3.png" and first["caption"] == "a cloudy picture number 3"
    assert first["semantic_similarity"] == pytest.approx(1.0, abs=2e-3)  # the query embedded by the same model
    assert main(["index", "query", str(tmp_path / "index"), str(paths[3]), "--json", "--rank-by", "semantic"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["neighbours"][0]["source"] == str(paths[3])

    # Named by clip-retrieval's own name, a model this machine lacks: the index works, the similarity is off.
    write_clip_retrieval(tmp_path / "clip-out-2", rows, emb)
    assert main(["index", "build", str(tmp_path / "training"), "--out", str(tmp_path / "index-2"), "--size", "32",
                 "--workers", "1", "--embeddings", str(tmp_path / "clip-out-2"), "--embeddings-model",
                 "ViT-B/32"]) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="ViT-B/32 is not on this machine"):
        assert main(["index", "query", str(tmp_path / "index-2"), str(paths[0]), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["neighbours"][0]["url"] == "https://example.org/img/0.png"
    assert result["neighbours"][0]["semantic_similarity"] is None
    assert main(["index", "info", str(tmp_path / "index-2"), "--json"]) == 0
    assert "not on this machine" in json.loads(capsys.readouterr().out)["semantic"]["note"]
