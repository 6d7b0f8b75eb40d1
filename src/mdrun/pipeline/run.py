"""The stages of a run: data, forget split, inputs, original model, Retrain, unlearning, evaluation, record."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from mdrun.data import load_dataset
from mdrun.data.forget import ForgetSplit, select_forget
from mdrun.data.types import RetrievalDataset
from mdrun.methods import UnlearningData, build_method
from mdrun.errors import MdrunError
from mdrun.metrics import METRICS, compute_metrics
from mdrun.metrics.gap_to_retrain import compare_to_retrain
from mdrun.metrics.scores import ModelScores
from mdrun.models import MODELS, MultimodalModel, SplitInputs
from mdrun.pipeline.cache import StageCache, cache_key, load_scores, load_scores_cost, save_scores
from mdrun.pipeline.evaluate import EvalSets, build_eval_sets, score_model
from mdrun.pipeline.meter import StageMeter
from mdrun.pipeline.record import RunRecord
from mdrun.pipeline.settings import ExperimentSettings
from mdrun.training import Recipe, train_on_task

log = logging.getLogger(__name__)


class Experiment:
    """One run: every stage is a method, called in order by `run`, each logging its start and its figure."""

    def __init__(self, settings: ExperimentSettings) -> None:
        self.settings = settings
        self.cache = StageCache(settings.cache_dir)
        self.record: RunRecord | None = None

    def stage(self, name: str, work: Callable[[], Any], cost_extra: dict | None = None) -> Any:
        """Run one stage under a meter and record its cost; a failure is recorded before it propagates."""
        try:
            with StageMeter() as meter:
                result = work()
        except BaseException as error:
            if self.record:
                self.record.stage_failed(name, error)
            raise
        cost = {**asdict(meter.cost), **(cost_extra or {})}
        if self.record:
            self.record.stage_done(name, cost)
        return result

    # -- data --------------------------------------------------------------------------------

    def load_data(self) -> RetrievalDataset:
        log.info("data: loading '%s'", self.settings.data["name"])
        dataset = load_dataset(**self.settings.data)
        log.info("data: %d train, %d val, %d test images; %d train pairs",
                 dataset.train.num_images, dataset.val.num_images, dataset.test.num_images, dataset.train.num_captions)
        return dataset

    def split_forget(self, dataset: RetrievalDataset) -> ForgetSplit:
        forget = select_forget(dataset.train, self.settings.forget.get("size"), self.settings.forget.get("ids_file"), self.settings.seed)
        log.info("forget set: %d images (%d pairs); retain set: %d images",
                 len(forget.forget_images), len(forget.forget_pairs(dataset.train)), len(forget.retain_images))
        return forget

    def prepare_inputs(self, dataset: RetrievalDataset) -> dict[str, SplitInputs]:
        arch = MODELS.get(self.settings.model["arch"])
        log.info("inputs: preparing %s inputs for train, val, test", self.settings.model["arch"])
        return {
            name: arch.prepare_inputs(split, self.settings.cache_dir, **self.settings.model.get("inputs", {}))
            for name, split in dataset.splits.items()
        }

    # -- models ------------------------------------------------------------------------------

    def fresh_model(self, inputs: SplitInputs) -> MultimodalModel:
        """Build the model at its pre-trained start; the same seed gives the original and Retrain the same start."""
        torch.manual_seed(self.settings.seed)
        arch = MODELS.get(self.settings.model["arch"])
        return arch.build(inputs, **self.settings.model.get("params", {})).to(self.settings.device)

    def recipe(self) -> Recipe:
        return Recipe(**self.settings.model.get("train", {}))

    def model_key(self, dataset: RetrievalDataset, extra: dict) -> str:
        model = {key: value for key, value in self.settings.model.items() if key != "name"}
        data = {"pairs": dataset.train.fingerprint(), "files": dataset.train.files_fingerprint()}
        return cache_key({"data": data, "model": model, "seed": self.settings.seed, **extra})

    def trained_model(self, stage: str, key: str, inputs: SplitInputs, captions: torch.Tensor) -> MultimodalModel:
        """Train on `captions` from the pre-trained start, or load the cached model of the same key."""
        model = self.fresh_model(inputs)
        state = self.cache.load_state(stage, key)
        if state is not None:
            model.load_state_dict(state)
            meta = self.cache.load_meta(stage, key) or {}
            log.info("%s: reusing cached model %s (trained in %.1f s)", stage, key, meta.get("seconds", float("nan")))
            if self.record:
                self.record.stage_done(stage, {**meta.get("cost", {}), "cached": True, "key": key})
            return model.eval()

        log.info("%s: training on %d pairs for %d epochs", stage, len(captions), self.recipe().epochs)

        def work():
            return train_on_task(model, inputs, captions, self.recipe(), self.settings.seed, desc=f"train {stage}")

        with StageMeter() as meter:
            try:
                stats = work()
            except BaseException as error:
                if self.record:
                    self.record.stage_failed(stage, error)
                raise
        cost = {**asdict(meter.cost), **stats}
        self.cache.save_state(stage, key, model.state_dict(), {"seconds": meter.cost.seconds, "cost": cost})
        if self.record:
            self.record.stage_done(stage, {**cost, "cached": False, "key": key})
        log.info("%s: trained in %.1f s, final loss %.3f", stage, meter.cost.seconds, stats["final_loss"])
        return model.eval()

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(
        self, role: str, model: MultimodalModel, inputs, dataset, sets: EvalSets, reference: ModelScores | None,
        model_key: str | None = None,
    ) -> ModelScores:
        """Score a model and record its metrics; scores of a cached model are cached too, under `model_key`."""
        options = self.settings.evaluation
        scores_key = None
        if model_key:
            scores_key = cache_key({"model": model_key, "sets": sets.fingerprint(), "rerank_k": options["rerank_k"]})
            scores = load_scores(self.cache.scores_dir(scores_key))
            if scores is not None:
                log.info("evaluate %s: reusing cached scores %s", role, scores_key)
                # The recorded cost is the cost of computing the scores, as for cached models.
                cost = load_scores_cost(self.cache.scores_dir(scores_key))
                self.record.stage_done(f"evaluate_{role}", {**cost, "cached": True, "key": scores_key})
                return self.record_metrics(role, scores, reference)

        log.info("evaluate %s: %s", role, ", ".join(f"{name} {len(g)} galleries" for name, g in sets.galleries.items()))

        def work():
            return score_model(model, inputs, dataset.splits, sets, options["rerank_k"], options["batch_size"], f"evaluate {role}")

        scores = self.stage(f"evaluate_{role}", work)
        if scores_key:
            save_scores(scores, self.cache.scores_dir(scores_key), self.record.summary["cost"][f"evaluate_{role}"])
        return self.record_metrics(role, scores, reference)

    def record_metrics(self, role: str, scores: ModelScores, reference: ModelScores | None) -> ModelScores:
        options = self.settings.evaluation
        metrics = compute_metrics(options["metrics"], scores, reference)
        self.record.save_pairs(role, scores.records)
        self.record.set("models", role, metrics)
        log.info("evaluate %s: test r_mean %.1f, forget r_mean %.1f, deletion AUC %.1f (similarity) %.1f (matching)",
                 role, metrics.get("test/r_mean", float("nan")), metrics.get("forget/r_mean", float("nan")),
                 metrics.get("deletion_auc/similarity", float("nan")), metrics.get("deletion_auc/matching", float("nan")))
        return scores

    def record_gap_to_retrain(self, role: str, scores: ModelScores, retrain_scores: ModelScores) -> None:
        """Add the gap to Retrain of every recorded metric, and the KS test of the D_f scores, to `role`'s metrics."""
        models = self.record.summary["models"]
        gaps = compare_to_retrain(models[role], models["retrain"], scores.records, retrain_scores.records)
        self.record.set("models", role, {**models[role], **gaps})
        log.info("gap to Retrain, %s: mean %.1f, KS statistic %.1f (p = %.3f)",
                 role, gaps["gap/mean"], gaps["ks/statistic"], gaps["ks/pvalue"])

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        settings = self.settings
        dataset = self.load_data()
        forget = self.split_forget(dataset)
        train = dataset.train
        forget_pairs = torch.from_numpy(forget.forget_pairs(train))
        retain_pairs = torch.from_numpy(forget.retain_pairs(train))
        heldout = dataset.splits[settings.evaluation.get("heldout_split", "test")]
        sets = build_eval_sets(train, heldout, forget, settings.evaluation.get("gallery_size"),
                               settings.evaluation["retain_chunks"], settings.seed)
        if sets.gallery_size < 10:
            log.warning("galleries of %d images make recall@k nearly meaningless; delete more images or set eval.gallery_size",
                        sets.gallery_size)
        # Build the method and look up the metrics before any expensive stage, so bad settings fail first.
        method = build_method(settings.method["name"], **settings.method.get("params", {}))
        for name in settings.evaluation["metrics"]:
            METRICS.get(name)
        inputs = self.prepare_inputs(dataset)

        self.record = RunRecord(settings.run_dir, settings.config, {
            "data": settings.data["name"], "model": settings.model["name"], "method": settings.method["name"],
            "tag": settings.config.get("tag"), "seed": settings.seed, "forget_images": len(forget.forget_images),
            "forget_pairs": len(forget_pairs), "forget_ids_file": settings.forget.get("ids_file"),
            "gallery_size": sets.gallery_size,
        })

        original_key = self.model_key(dataset, {})
        original = self.trained_model("original", original_key, inputs["train"], torch.arange(train.num_captions))
        retrain_key = self.model_key(dataset, {"forget": forget.fingerprint(train)})
        retrained = self.trained_model("retrain", retrain_key, inputs["train"], retain_pairs)

        original_scores = self.evaluate("original", original, inputs, dataset, sets, None, model_key=original_key)
        retrain_scores = self.evaluate("retrain", retrained, inputs, dataset, sets, original_scores, model_key=retrain_key)
        self.record_gap_to_retrain("original", original_scores, retrain_scores)

        log.info("unlearn: %s on %d forget pairs", settings.method["name"], len(forget_pairs))
        data = UnlearningData(
            inputs=inputs["train"], forget=forget_pairs, retain=retain_pairs,
            fresh_model=lambda: self.fresh_model(inputs["train"]), recipe=self.recipe(), val_inputs=inputs["val"],
        )
        unlearned = self.stage("unlearn", lambda: method(copy.deepcopy(original), data, settings.seed))
        if not all(bool(torch.isfinite(parameter).all()) for parameter in unlearned.parameters()):
            raise MdrunError(f"{settings.method['name']} diverged: the unlearned model has non-finite weights; "
                             "lower method.params.lr")
        log.info("unlearn: done in %.1f s", self.record.summary["cost"]["unlearn"]["seconds"])
        unlearned_scores = self.evaluate("unlearned", unlearned, inputs, dataset, sets, reference=original_scores)
        self.record_gap_to_retrain("unlearned", unlearned_scores, retrain_scores)
        return self.record.summary
