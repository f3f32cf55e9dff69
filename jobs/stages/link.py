"""Link: dataset-level relations between files, computed in Spark after annotate.

    voxlake link --warehouse DIR [--config FILE]      (also a step of `voxlake run`, before publish)

1. Speaker clusters. Each file's speaker embedding (annotator `speakers`, unit length) is hashed with
   Spark ML's BucketedRandomProjectionLSH; files sharing all hashes of one band are candidates, and a
   candidate pair whose cosine similarity reaches `link.speaker_similarity_min` is an edge. The banding
   (`hash_rows` projections ANDed per band, `hash_bands` bands ORed) is added here because Spark's own
   approxSimilarityJoin ORs single projections: in 256 dimensions one projection separates voices so
   weakly that most pairs of an archive would be compared. The defaults (16 x 32, bucket 0.25) were
   chosen on synthetic archives (bench `link`): fewer candidates, at the cost of finding part of the
   same-speaker pairs; connected components still join a speaker's files through the pairs found.
2. Duplicates. Files whose 16 kHz PCM is identical (`fingerprint.pcm_sha256`) are joined to the first
   of them; files whose landmark sets (`fingerprint.landmarks`) have a Jaccard similarity of at least
   `link.duplicate_similarity_min` are edges, found with Spark ML's MinHashLSH (approxSimilarityJoin).
3. Connected components of each edge set (min-label propagation with pointer jumping, in DataFrame
   joins: each round halves the distance a label still has to travel) name the groups: the smallest
   audio_id of a component is its id. In a duplicate group the copy that the recipe's cheap checks do
   not rule out (the cascade's: a narrowband or clipped copy is not the one to keep), then the one with
   the best DNSMOS (then the longest, then the smallest id) is kept; the others get `duplicate_of` = its id, and publish
   quarantines them as `near_duplicate` when the recipe says `dedup: true`.

Commit: one MERGE into silver.links that touches only rows whose values changed (and deletes the rows of
audio no longer live), so a rerun over the same silver changes nothing. Nothing is collected: the only
values the driver sees are counts (and the 256 means of the embeddings, inside StandardScaler).
When neither bronze, silver nor silver.links has a new version since the last link with the same `link`
settings (the stage's inputs: jobs.stages.stage), the stage does nothing: a nightly run with no new
audio skips it.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from annotators.fingerprint import HASH_SPACE  # the landmarks' value range, as the annotator wrote them
from jobs.config import Config
from jobs.config.settings import LinkSettings
from jobs.stages.recipe import configured_checks, ruled_out
from jobs.stages.stage import Inputs, Stage, StageContext, Work, run_stage
from jobs.warehouse.catalog import BRONZE, LINKS, SILVER
from jobs.warehouse.ledger import RunRecord
from jobs.warehouse.live import audio_view
from jobs.warehouse.store import Warehouse

log = logging.getLogger(__name__)


@dataclass
class LinkResult:
    files: int = 0
    speaker_edges: int = 0
    speaker_clusters: int = 0  # clusters of more than one file
    duplicate_edges: int = 0
    duplicate_groups: int = 0  # groups of more than one file
    duplicates: int = 0  # files with a duplicate_of (not kept)
    changed: int = 0  # silver.links rows written or deleted
    rounds: int = 0
    skipped: str | None = None  # why the stage did nothing


def speaker_edges(spark, emb, s: LinkSettings):
    """(a, b) pairs, a < b, of files whose embeddings have cosine similarity >= speaker_similarity_min."""
    from pyspark.ml.feature import BucketedRandomProjectionLSH, Normalizer, StandardScaler
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    if emb.isEmpty():  # nothing to hash (an LSH model cannot be fitted on no rows)
        return spark.createDataFrame([], "a string, b string")
    rows, bands = s.hash_rows, s.hash_bands
    # Voice embeddings share a large common component (they are non-negative), which projections cannot
    # separate: they are hashed minus the archive's mean embedding (StandardScaler), renormalised
    raw = emb.select("audio_id", array_to_vector("embedding").alias("raw"))
    centred = StandardScaler(inputCol="raw", outputCol="centred", withMean=True, withStd=False).fit(raw).transform(raw)
    vecs = Normalizer(inputCol="centred", outputCol="vec").transform(centred).select("audio_id", "vec")
    lsh = BucketedRandomProjectionLSH(inputCol="vec", outputCol="hashes", bucketLength=float(s.bucket_length),
                                      numHashTables=rows * bands, seed=s.seed)
    hashed = lsh.fit(vecs).transform(vecs)
    keys = (hashed.select("audio_id", F.posexplode("hashes").alias("pos", "h"))
            .select("audio_id", (F.col("pos") / rows).cast("int").alias("band"), "pos",
                    vector_to_array("h")[0].cast("long").alias("h"))
            .groupBy("audio_id", "band")
            .agg(F.xxhash64(F.array_sort(F.collect_list(F.struct("pos", "h")))).alias("key")))
    a, b = keys.alias("a"), keys.alias("b")
    pairs = (a.join(b, (F.col("a.band") == F.col("b.band")) & (F.col("a.key") == F.col("b.key"))
                    & (F.col("a.audio_id") < F.col("b.audio_id")))
             .select(F.col("a.audio_id").alias("a"), F.col("b.audio_id").alias("b")).distinct())
    ea, eb = emb.alias("ea"), emb.alias("eb")
    dot = F.aggregate(F.zip_with("ea.embedding", "eb.embedding", lambda x, y: x * y), F.lit(0.0),
                      lambda acc, v: acc + v)
    return (pairs.join(ea, F.col("a") == F.col("ea.audio_id")).join(eb, F.col("b") == F.col("eb.audio_id"))
            .where(dot >= float(s.speaker_similarity_min)).select("a", "b"))


def duplicate_edges(spark, fp, s: LinkSettings, materialise):
    """(a, b) pairs, a < b: identical 16 kHz PCM, or landmark sets with Jaccard >= duplicate_similarity_min."""
    from pyspark.ml.feature import HashingTF, MinHashLSH
    from pyspark.sql import functions as F

    first = fp.groupBy("pcm_sha256").agg(F.min("audio_id").alias("a"))
    exact = fp.join(first, "pcm_sha256").where(F.col("audio_id") != F.col("a")).select("a", F.col("audio_id").alias("b"))
    # landmark ids are already hashes in [0, 2^24): HashingTF only turns each set into a sparse vector
    with_marks = fp.where(F.size("landmarks") > 0).select(
        "audio_id", F.transform("landmarks", lambda v: v.cast("string")).alias("marks"))
    vecs = materialise(HashingTF(inputCol="marks", outputCol="vec", numFeatures=HASH_SPACE, binary=True)
                       .transform(with_marks).select("audio_id", "vec"), "link_marks")
    if vecs.isEmpty():
        return exact.distinct()
    model = MinHashLSH(inputCol="vec", outputCol="hashes", numHashTables=s.minhash_tables, seed=s.seed).fit(vecs)
    near = (model.approxSimilarityJoin(vecs, vecs, 1.0 - float(s.duplicate_similarity_min), distCol="d")
            .where(F.col("datasetA.audio_id") < F.col("datasetB.audio_id"))
            .select(F.col("datasetA.audio_id").alias("a"), F.col("datasetB.audio_id").alias("b")))
    return exact.unionByName(near).distinct()


def components(spark, edges, warehouse: Warehouse, tag: str, run_id: str, max_rounds: int):
    """(audio_id, group) for every file of an edge: group = the smallest id reachable. Returns
    (DataFrame, rounds). Each round is written to staging, so the plan never grows with the rounds."""
    from pyspark.sql import functions as F

    both = edges.select(F.col("a").alias("src"), F.col("b").alias("dst")).unionByName(
        edges.select(F.col("b").alias("src"), F.col("a").alias("dst")))
    labels = both.groupBy("src").agg(F.least(F.min("dst"), F.col("src")).alias("label")) \
        .withColumnRenamed("src", "audio_id")
    paths = [warehouse.staging(f"link_{tag}_{i}", run_id) for i in (0, 1)]
    labels.write.mode("overwrite").parquet(paths[0])
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        cur = spark.read.parquet(paths[(rounds - 1) % 2])
        # a neighbour's label, then the label's own label (pointer jumping)
        via_edges = both.join(cur, both.src == cur.audio_id).select(F.col("dst").alias("audio_id"), "label")
        jumped = cur.alias("c").join(cur.alias("l"), F.col("c.label") == F.col("l.audio_id")) \
            .select(F.col("c.audio_id").alias("audio_id"), F.col("l.label").alias("label"))
        new = cur.unionByName(via_edges).unionByName(jumped).groupBy("audio_id").agg(F.min("label").alias("label"))
        new.write.mode("overwrite").parquet(paths[rounds % 2])
        written = spark.read.parquet(paths[rounds % 2])
        changed = written.join(cur.withColumnRenamed("label", "old"), "audio_id").where("label != old").count()
        if changed == 0:
            return written, rounds, paths
    log.warning("link: %s components did not settle in %d rounds (link.max_rounds); groups may be split",
                tag, max_rounds)
    return spark.read.parquet(paths[rounds % 2]), rounds, paths


class LinkStage(Stage):
    """Select: the live audio that decoded, with its speaker embedding and fingerprint. Process and commit
    (one chunk): speaker and duplicate edges, their connected components, one MERGE into silver.links.
    The inputs: bronze, silver, silver.links and the `link` settings."""

    name = "link"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.result = LinkResult()
        self.staged: list[str] = []
        self.cached: list = []
        self.emb = self.fp = None

    def _configured(self) -> bool:
        return bool(set(self.config.annotate.annotators) & {"speakers", "fingerprint"})

    def inputs(self) -> Inputs | None:
        if not self._configured():
            return None
        checks = configured_checks(self.config)
        return Inputs(tables=(BRONZE, SILVER, LINKS), facts={"link": dataclasses.asdict(self.config.link),
                                                             "checks": checks.digest if checks else None})

    def unchanged(self, recorded: dict) -> LinkResult:
        log.info("link: bronze and silver unchanged since the last link: nothing to do")
        return LinkResult(skipped="nothing changed since the last link")

    def select(self) -> Work | None:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        spark, warehouse = self.spark, self.warehouse
        if not self._configured():
            # nothing to link with: links from an earlier configuration would be stale, so they go
            links = DeltaTable.forPath(spark, warehouse.path(LINKS))
            if not links.toDF().isEmpty():
                links.delete()
            log.info("link: neither `speakers` nor `fingerprint` is in annotate.annotators: nothing to link")
            self.result = LinkResult(skipped="no speakers or fingerprint annotator configured")
            return None
        live = audio_view(spark, warehouse).select("audio_id")
        silver = spark.read.format("delta").load(warehouse.path(SILVER)).join(live, "audio_id", "left_semi")
        files = silver.where("decode.status = 'ok'").select(
            "audio_id", F.col("quality.ovrl").alias("ovrl"), F.col("decode.duration_s").alias("dur"),
            ruled_out(configured_checks(self.config)).cast("int").alias("ruled_out"))
        self.emb = silver.where("speakers.status = 'ok' AND speakers.embedding IS NOT NULL").select(
            "audio_id", F.col("speakers.embedding").alias("embedding"))
        self.fp = silver.where("fingerprint.status = 'ok'").select(
            "audio_id", F.col("fingerprint.pcm_sha256").alias("pcm_sha256"),
            F.col("fingerprint.landmarks").alias("landmarks"))
        self.result.files = files.count()
        return Work(files, self.result.files)

    def materialise(self, df, name: str):
        """Write `df` to staging and read it back. The LSH models' functions fail on a null or empty vector,
        and Spark may evaluate them before a filter that removes such rows when both end up in one
        predicate: what they read is filtered in a plan of its own."""
        path = self.warehouse.staging(name, self.record.run_id)
        self.staged.append(path)
        df.write.mode("overwrite").parquet(path)
        return self.spark.read.parquet(path)

    def commit_chunk(self, part, index: int, count: int, work: Work) -> bool:
        from delta.tables import DeltaTable
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        spark, warehouse, record, s = self.spark, self.warehouse, self.record, self.config.link
        emb, fp = self.materialise(self.emb, "link_emb"), self.materialise(self.fp, "link_fp")
        sp_edges = speaker_edges(spark, emb, s).cache()
        dup_edges = duplicate_edges(spark, fp, s, self.materialise).cache()
        self.cached += [sp_edges, dup_edges]
        self.result.speaker_edges, self.result.duplicate_edges = sp_edges.count(), dup_edges.count()
        none = spark.createDataFrame([], "audio_id string, label string")
        sp, r1, p1 = components(spark, sp_edges, warehouse, "speaker", record.run_id, s.max_rounds) \
            if self.result.speaker_edges else (none, 0, [])
        dup, r2, p2 = components(spark, dup_edges, warehouse, "dup", record.run_id, s.max_rounds) \
            if self.result.duplicate_edges else (none, 0, [])
        self.staged += p1 + p2
        self.result.rounds = r1 + r2
        speaker_ids = emb.select("audio_id").join(sp.withColumnRenamed("label", "cluster"), "audio_id", "left") \
            .select("audio_id", F.coalesce("cluster", "audio_id").alias("speaker_cluster_id"))
        groups = part.join(dup.withColumnRenamed("label", "group"), "audio_id", "left") \
            .withColumn("duplicate_group_id", F.coalesce("group", "audio_id"))
        # the kept copy of each group: not ruled out, best DNSMOS, longest, smallest id (a window per group)
        w = Window.partitionBy("duplicate_group_id").orderBy("ruled_out", F.col("ovrl").desc_nulls_last(),
                                                             F.col("dur").desc_nulls_last(), "audio_id")
        ranked = groups.withColumn("_rank", F.row_number().over(w)) \
            .withColumn("duplicate_group_size", F.count("*").over(Window.partitionBy("duplicate_group_id")))
        kept = ranked.where("_rank = 1").select("duplicate_group_id", F.col("audio_id").alias("_kept"))
        links = (ranked.join(kept, "duplicate_group_id")
                 .select("audio_id", "duplicate_group_id",
                         F.when(F.col("_rank") > 1, F.col("_kept")).alias("duplicate_of"),
                         F.col("duplicate_group_size").cast("long").alias("duplicate_group_size"))
                 .join(speaker_ids, "audio_id", "left")
                 .withColumn("linked_at", F.current_timestamp()))
        staging = warehouse.staging("links", record.run_id)
        self.staged.append(staging)
        links.write.format("delta").mode("overwrite").save(staging)
        links = spark.read.format("delta").load(staging)
        stats = links.agg(
            F.countDistinct(F.when(F.col("duplicate_group_size") > 1, F.col("duplicate_group_id"))).alias("groups"),
            F.count(F.col("duplicate_of")).alias("dups")).first()
        self.result.duplicate_groups, self.result.duplicates = int(stats["groups"]), int(stats["dups"])
        self.result.speaker_clusters = (links.where(F.col("speaker_cluster_id").isNotNull())
                                        .groupBy("speaker_cluster_id").count().where("count > 1").count())
        cols = ["speaker_cluster_id", "duplicate_group_id", "duplicate_of", "duplicate_group_size"]
        target = DeltaTable.forPath(spark, warehouse.path(LINKS))
        same = " AND ".join(f"t.{c} <=> s.{c}" for c in cols)
        self.result.changed = (links.alias("s").join(target.toDF().alias("t"),
                                                     F.col("s.audio_id") == F.col("t.audio_id"), "full_outer")
                               .where(f"NOT ({same})").count())
        if self.result.changed:  # no commit at all when nothing changed (a rerun leaves the table's version)
            with warehouse.committing("link.links"):
                (target.alias("t").merge(links.alias("s"), "t.audio_id = s.audio_id")
                 .whenMatchedUpdate(condition=f"NOT ({same})", set={c: f"s.{c}" for c in [*cols, "linked_at"]})
                 .whenNotMatchedInsertAll()
                 .whenNotMatchedBySourceDelete()
                 .execute())
        self.settled = True
        return True

    def finish(self, work: Work | None) -> LinkResult:
        r = self.result
        if work is not None:
            log.info("link: %d files, %d speaker clusters of 2+, %d duplicate groups (%d copies not kept), "
                     "%d rows changed", r.files, r.speaker_clusters, r.duplicate_groups, r.duplicates, r.changed)
        return r

    def close(self) -> None:
        for path in self.staged:
            self.warehouse.remove(path)
        for df in self.cached:
            df.unpersist()


def run_link(spark, config: Config, warehouse: Warehouse, record: RunRecord) -> LinkResult:
    """`voxlake link`: the stage, run by the shared loop."""
    return run_stage(LinkStage(StageContext(spark, config, warehouse, record)))
