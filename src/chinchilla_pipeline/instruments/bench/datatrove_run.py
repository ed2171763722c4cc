"""datatrove's side of ``bench/datatrove.py``: ``JsonlReader`` + ``DocumentTokenizer`` over a folder of JSON lines.

Run by the separate virtual env's Python (``.venv-datatrove``, datatrove 0.10.1), never imported by the package:
datatrove is no dependency of it. Its defaults otherwise: HF ``tokenizers`` ``encode_batch`` in batches of 10,000
documents, an EOS token after each document, ``.ds`` token files with their ``.index`` and ``.metadata``, then
each rank's documents shuffled into a second file (``shuffle_documents``). Prints the tokens written.

    .venv-datatrove/bin/python src/chinchilla_pipeline/instruments/bench/datatrove_run.py \
        IN_DIR TOKENIZER_JSON OUT_DIR EOS TASKS
"""

import os
import sys
from pathlib import Path


def main(in_dir: str, tokenizer_json: str, out_dir: str, eos: str, tasks: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per task, as prepare's workers: N tasks on N cores
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(in_dir, glob_pattern="*.jsonl.gz", text_key="text", doc_progress=False),
            DocumentTokenizer(out_dir, tokenizer_name_or_path=tokenizer_json, eos_token=eos),
        ],
        tasks=tasks,  # one process per task: files split between them
        workers=tasks,
        logging_dir=str(Path(out_dir) / "logs"),
    ).run()
    token_bytes = 2  # uint16 ids: the vocabulary is under 65,536
    num_tokens = sum(p.stat().st_size for p in Path(out_dir).glob("*.ds")) // token_bytes
    print(f"datatrove tokens {num_tokens}")


if __name__ == "__main__":
    main(*sys.argv[1:5], int(sys.argv[5]))
