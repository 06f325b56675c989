"""Reload a checkpoint folder with plain transformers only and generate from one image.

Run as a script in a fresh interpreter (``python plain_reload.py FOLDER IMAGE PROMPT N``) so that no mnaft
module is imported: it prints one JSON line with the processor class, the image processor class and the
generated token ids, which the tests compare with what the project's own loader generates.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    folder, image_path, prompt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
    tok = processor.tokenizer
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=n,
            do_sample=False,
            num_beams=1,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    report = {
        "processor": type(processor).__name__,
        "image_processor": type(getattr(processor, "image_processor", None)).__name__,
        "modules": sorted(m for m in sys.modules if m.split(".")[0] == "mnaft_core"),
        "tokens": out[0, enc["input_ids"].shape[1] :].tolist(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
