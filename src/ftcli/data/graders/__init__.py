"""OpenAI's grader language (the graders of reinforcement fine-tuning and of evals), run offline by ftcli.

spec: the grader definitions (pydantic, one discriminated union); template: `{{item.x}}` / `{{sample.output_text}}`
rendering; similarity: text_similarity's metrics; expression: multi's `calculate_output`; engine: `grade` and
`grade_batch`. Judges (score_model, label_model) and the python sandbox come in through seams, so this package stays
pure data: it never opens a network connection or runs user code itself.
"""
