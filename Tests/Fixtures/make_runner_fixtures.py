"""Whole-pipeline parity fixtures for plmq's runner: from image files and a conversation to greedy
tokens, through transformers' own PerceptionLMProcessor (chat template, image/video processors,
placeholder expansion) and generate(), on the committed tiny fixture checkpoints in fp32.

Run from the repository root with the pinned venv (Tests/Fixtures/requirements.txt):
    HF_HUB_OFFLINE=1 python Tests/Fixtures/make_runner_fixtures.py
Writes Tests/Fixtures/runner/runner_cases.json (a few kB). Deterministic: no sampling, no randomness.
"""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import PerceptionLMForConditionalGeneration, PerceptionLMProcessor
from transformers.image_utils import load_image

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent
MAX_NEW = 10
VARIANTS = ["tiny-fp32-mha-tied", "tiny-bf16-gqa-llama3"]


def user(parts):
    return {"role": "user", "content": parts}


def img():
    return {"type": "image"}


def txt(t):
    return {"type": "text", "text": t}


def cases():
    return [
        ("one_image", [user([img(), txt("What shapes are in this image?")])], ["cases/tiny-fp32-mha-tied/png.png"], None),
        ("tiles", [user([txt("Describe the picture."), img()])], ["images/inputs/astronaut.png"], None),
        ("two_images", [user([img(), txt("Compare"), img(), txt("these two pictures.")])],
         ["images/inputs/coffee.jpg", "images/inputs/chelsea.png"], None),
        ("video", [user([{"type": "video"}, txt("What happens in the video?")])], [], "images/inputs/video_frames"),
        ("system", [{"role": "system", "content": [txt("You answer in one word.")]},
                    user([txt("Hello, who are you?")])], [], None),
        ("text_only", [user([txt("Tell me a story about a red square.")])], [], None),
    ]


def frames(folder):
    files = sorted(p for p in (ROOT / folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return [np.array(load_image(str(p))) for p in files]


@torch.no_grad()
def run(model, processor, messages, images, video):
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs = {"text": prompt, "return_tensors": "pt", "add_special_tokens": False}
    if images:
        kwargs["images"] = [load_image(str(ROOT / p)) for p in images]
    if video:
        # Every frame (transformers samples only when asked; plmq uses every frame of a clip
        # shorter than --frames).
        kwargs["videos"] = [np.stack(frames(video))]
    enc = processor(**kwargs)
    extra = {k: v.float() if v.is_floating_point() else v for k, v in enc.items() if k != "attention_mask"}
    out = model.generate(**extra, max_new_tokens=MAX_NEW, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:].tolist()
    return {
        "prompt": prompt,
        "input_ids": enc["input_ids"][0].tolist(),
        "tiles": [int(enc["pixel_values"].shape[1])] * len(images) if images else [],
        "frames": int(enc["pixel_values_videos"].shape[1]) if video else 0,
        "greedy_ids": new,
        "text": processor.tokenizer.decode(new, skip_special_tokens=True),
    }


def main():
    out = {"max_new_tokens": MAX_NEW, "variants": {}}
    for variant in VARIANTS:
        path = ROOT / "models" / variant
        model = PerceptionLMForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        processor = PerceptionLMProcessor.from_pretrained(path)
        results = []
        for name, messages, images, video in cases():
            r = run(model, processor, messages, images, video)
            results.append({"name": name, "messages": messages, "images": images, "video": video, **r})
            if name == "one_image":
                # A second chat turn on the first answer: the template re-renders the whole
                # conversation and the runner must only prefill what is new.
                turn2 = messages + [{"role": "assistant", "content": [txt(r["text"])]},
                                    user([txt("And what colour are they?")])]
                r2 = run(model, processor, turn2, images, None)
                results.append({"name": "second_turn", "messages": turn2, "images": images, "video": None, **r2})
        out["variants"][variant] = results
    dest = ROOT / "runner" / "runner_cases.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print("wrote", dest)


if __name__ == "__main__":
    main()
