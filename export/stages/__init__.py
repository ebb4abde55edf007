"""The build's stages, each a module with frozen dataclasses for what goes in and comes out.
`export.pipeline` chains them:

    read         Sources                    → Dataset
    split        Dataset                    → Split
    candidates   Dataset                    → CandidateModels
    visitors     Dataset                    → LearnedSegments, then Visitors
    ranking      RankingInput               → FittedRanker
    evaluation   EvaluationInput            → Evaluation
    write        Trained + Destination      → the bundle directory and its manifest

Training (candidates, visitors, ranking) runs twice when the build evaluates: on the split's
training part for the evaluation, then on every event for the bundle. The algorithms live in
the modules of `export` the stages call (`export.segments`, `export.ranker`, ...)."""
