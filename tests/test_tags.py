"""Tag, URI and label parsing against real PAI image URIs, plus version-order properties."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from catalog.parse import SCOPES
from catalog.parse.tags import (
    KNOWN_FRAMEWORKS,
    canonical_framework,
    parse_image,
    parse_tag,
    parse_uri,
)
from catalog.parse.versions import compare, parse_version, sort_key
from tests.conftest import FIXTURES

TSV = FIXTURES / "public-images.tsv"


def tsv_uris() -> list[str]:
    with TSV.open(newline="", encoding="utf-8") as handle:
        return [row["uri"] for row in csv.DictReader(handle, delimiter="\t")]


def want(
    framework: str | None,
    version: str | None,
    accelerator: str | None = None,
    python: str | None = None,
    cuda: str | None = None,
    os: str | None = None,
    components: tuple[tuple[str, str | None], ...] = (),
    status: str = "ok",
    build: str | None = None,
) -> dict[str, Any]:
    return {
        "framework": framework,
        "framework_version": version,
        "accelerator": accelerator,
        "python_version": python,
        "cuda_version": cuda,
        "os_version": os,
        "components": components,
        "parse_status": status,
        "build_suffix": build,
    }


PT = "PyTorch"
TF = "TensorFlow"
U18, U20, U22, U24 = "ubuntu18.04", "ubuntu20.04", "ubuntu22.04", "ubuntu24.04"

# One row per distinct tag shape found in public-images.tsv, read as a careful human would.
SHAPES = [
    pytest.param(
        "dsw-registry.cn-shanghai.cr.aliyuncs.com/pai/modelscope:1.23.0-pytorch2.5.1-gpu-py310-cu124-ubuntu22.04",
        want("ModelScope", "1.23.0", "GPU", "3.10", "12.4", U22, ((PT, "2.5.1"),)),
        id="app-version-then-framework",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-shanghai.cr.aliyuncs.com/pai/modelscope:1.34.0-pytorch2.3.1-cpu-py311-ubuntu22.04",
        want("ModelScope", "1.34.0", "CPU", "3.11", None, U22, ((PT, "2.3.1"),)),
        id="app-version-cpu-no-cuda",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai/modelscope:1.16.1-pytorch2.3.0tensorflow2.16.1-gpu-py310-cu121-ubuntu22.04",
        want("ModelScope", "1.16.1", "GPU", "3.10", "12.1", U22, ((PT, "2.3.0"), (TF, "2.16.1"))),
        id="two-frameworks-glued",
    ),
    pytest.param(
        "dsw-registry.cn-shanghai.cr.aliyuncs.com/pai/tensorflow-training:1.15PAI-gpu-py36-cu114-ubuntu18.04",
        want(TF, "1.15PAI", "GPU", "3.6", "11.4", U18),
        id="pai-version-letters",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/tensorflow-training:1.12.2PAI-cpu-py27-ubuntu16.04",
        want(TF, "1.12.2PAI", "CPU", "2.7", None, "ubuntu16.04"),
        id="three-part-pai-version-py27",
    ),
    pytest.param(
        "dsw-registry.cn-shanghai.cr.aliyuncs.com/pai/tensorflow:2.11-cpu-py39-ubuntu20.04-1",
        want(TF, "2.11", "CPU", "3.9", None, U20, build="1"),
        id="trailing-build-number",
    ),
    pytest.param(
        "dsw-registry.cn-wulanchabu.cr.aliyuncs.com/pai/pai-megatron-patch:24.07",
        want("pai-megatron-patch", "24.07"),
        id="unknown-repo-yy-mm",
    ),
    pytest.param(
        "dsw-registry.cn-wulanchabu.cr.aliyuncs.com/pai/pytorch:2.8.0-gpu-py312-cu128-ubuntu24.04-3995b779-1764359181",
        want(PT, "2.8.0", "GPU", "3.12", "12.8", U24, build="3995b779-1764359181"),
        id="hash-and-unix-time",
    ),
    pytest.param(
        "dsw-registry-vpc.ap-southeast-1.cr.aliyuncs.com/pai/training:26.07.20-pytorch2.11-python3.12-cuda13.0-ubuntu24.04_accelerated",
        want(PT, "2.11", "GPU", "3.12", "13.0", U24, build="26.07.20-accelerated"),
        id="generic-repo-framework-from-tag",
    ),
    pytest.param(
        "dsw-registry-vpc.ap-southeast-7.cr.aliyuncs.com/pai/python:3.10.19-cpu-ubuntu22.04-de657118-1764321500",
        want("Python", "3.10.19", "CPU", "3.10", None, U22, build="de657118-1764321500"),
        id="python-repo-python-from-version",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-beijing.cr.aliyuncs.com/cloud-dsw/eas-service:aigc-torch113-cu117-ubuntu22.04-v0.2.1_accelerated",
        want(
            "eas-service",
            None,
            "GPU",
            None,
            "11.7",
            U22,
            ((PT, "1.13"),),
            "partial",
            "aigc-v0.2.1-accelerated",
        ),
        id="compact-torch-version",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-beijing.cr.aliyuncs.com/pai-common/alpine:3.10",
        want("alpine", "3.10"),
        id="helper-image",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai/training-xpu-pytorch:2.0.0-torch2.6.0-ubuntu24.04-cuda12.6-py312-01ebc85b-1e0446d7",
        want(PT, "2.6.0", "XPU", "3.12", "12.6", U24, build="2.0.0-01ebc85b-1e0446d7"),
        id="own-component-beats-image-version",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-shanghai.cr.aliyuncs.com/pai/pytorch:2.7.0-gpu-py312-cu128-ubuntu24.04-ngc25.02-4e622ce0-1765438200",
        want(
            PT,
            "2.7.0",
            "GPU",
            "3.12",
            "12.8",
            U24,
            (("NGC", "25.02"),),
            build="4e622ce0-1765438200",
        ),
        id="ngc-after-os",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai/pytorch:2.7.0-gpu-py312-cu128-ubuntu24.04-ngc25.03-deep-ep-4d7302ff-1770029761",
        want(
            PT,
            "2.7.0",
            "GPU",
            "3.12",
            "12.8",
            U24,
            (("NGC", "25.03"),),
            build="deep-ep-4d7302ff-1770029761",
        ),
        id="feature-word-after-os",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai/pytorch:2.8.0-gpu-py311-cu128-ubuntu24.04-accl-b244fc94-1764407151",
        want(PT, "2.8.0", "GPU", "3.11", "12.8", U24, build="accl-b244fc94-1764407151"),
        id="accl-word",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai/lingjun-pytorch-training:2.4-24.07-gu8-gpu-py310-cu125-ubuntu22.04_accelerated",
        want(PT, "2.4", "GPU", "3.10", "12.5", U22, build="24.07-gu8-accelerated"),
        id="lingjun-extra-release",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai/ray:2.39.0-gpu-py312-cu118-ubuntu22.04",
        want("Ray", "2.39.0", "GPU", "3.12", "11.8", U22),
        id="ray",
    ),
    pytest.param(
        "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/nccl-tests:12.2.2-cudnn8-devel-ubuntu22.04-nccl2.19.3-1-85f9143",
        want(
            "nccl-tests",
            "12.2.2",
            "GPU",
            None,
            None,
            U22,
            (("cuDNN", "8"), ("NCCL", "2.19.3")),
            build="devel-1-85f9143",
        ),
        id="ngc-style-cudnn-nccl",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/comfyui:2.2-api",
        want("ComfyUI", "2.2", build="api"),
        id="app-flavour-word",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/diffuser-inference:2.2.1-py38-cu113-unbuntu2004-blade-public",
        want("diffuser", "2.2.1", "GPU", "3.8", "11.3", U20, (("Blade", None),), build="public"),
        id="misspelled-ubuntu",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/pai-rag:0.4.0-20250903",
        want("pai-rag", "0.4.0", build="20250903"),
        id="date-suffix",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/python-inference:3.6-ubuntu1804",
        want("Python", "3.6", None, "3.6", None, U18),
        id="compact-ubuntu",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/python-inference:py39-ubuntu2004",
        want("Python", None, None, "3.9", None, U20, status="partial"),
        id="python-and-os-only",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/sglang:0.5.8-acclep1.2.1-gpu",
        want("SGLang", "0.5.8", "GPU", components=(("acclep", "1.2.1"),)),
        id="unknown-component",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/sglang:v0.5.17",
        want("SGLang", "0.5.17"),
        id="v-prefixed-version",
    ),
    pytest.param(
        "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/vllm:0.13.0rc2.a8ec486.20260305pai-gpu",
        want("vLLM", "0.13.0rc2.a8ec486.20260305pai", "GPU"),
        id="prerelease-hash-date-version",
    ),
    pytest.param(
        "eas-registry-vpc.cn-shanghai.cr.aliyuncs.com/pai-eas/vllm:v0.9.1-modelgallery",
        want("vLLM", "0.9.1", build="modelgallery"),
        id="v-version-and-word",
    ),
    pytest.param(
        "eas-registry-vpc.eu-central-1.cr.aliyuncs.com/pai-eas/tritonserver:25.03-py3",
        want("Triton", "25.03", python="3"),
        id="ngc-yy-mm-py3",
    ),
    pytest.param(
        "pai-image-manage-registry.cn-wulanchabu.cr.aliyuncs.com/pai/llm-inference:tensorrt-llm-0.8.0",
        want("TensorRT-LLM", "0.8.0"),
        id="dashed-engine-name-then-version",
    ),
    pytest.param(
        "pai-image-manage-registry.cn-wulanchabu.cr.aliyuncs.com/pai/llm-inference:vllm-0.2.6-v2",
        want("vLLM", "0.2.6", build="v2"),
        id="engine-name-then-version",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/pai-pytorch-training:torch-1.12-cuda11.3-py38-acc-230219",
        want(PT, "1.12", "GPU", "3.8", "11.3", build="acc-230219"),
        id="name-version-tokens-cuda-dotted",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/pytorch-training:1.12.0-gpu-py38",
        want(PT, "1.12.0", "GPU", "3.8"),
        id="short-tag",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/pytorch-training:cuda11.3.1-cudnn8-devel-ubuntu20.04-py38-0625",
        want(PT, None, "GPU", "3.8", "11.3", U20, (("cuDNN", "8"),), "partial", "devel-0625"),
        id="cuda-first-no-version",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/pytorch:1.12-cuda11.3",
        want(PT, "1.12", "GPU", None, "11.3"),
        id="version-and-cuda",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/pytorch:1.12",
        want(PT, "1.12"),
        id="version-only",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/tensorflow-training:deeprec2212-gpu-py36-cu114-ubuntu18.04",
        want(TF, None, "GPU", "3.6", "11.4", U18, (("DeepRec", "2212"),), "partial"),
        id="deeprec-inside-tensorflow",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/pai-dlc/xgboost-training:1.6.0-cpu-py36-ubuntu18.04",
        want("XGBoost", "1.6.0", "CPU", "3.6", None, U18),
        id="xgboost",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc/hybridbackend:0.6-tf1.15-py3.6-cu116-ubuntu18.04",
        want("HybridBackend", "0.6", "GPU", "3.6", "11.6", U18, ((TF, "1.15"),)),
        id="dotted-python",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc/hybridbackend:developer-deeprec-py3.6-cuda11.4",
        want(
            "HybridBackend",
            None,
            "GPU",
            "3.6",
            "11.4",
            components=(("DeepRec", None),),
            status="partial",
            build="developer",
        ),
        id="name-only-component",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc/hybridbackend:developer-tensorflow1.14-manylinux_2_24-py3.6",
        want(
            "HybridBackend",
            None,
            None,
            "3.6",
            None,
            "manylinux_2_24",
            ((TF, "1.14"),),
            "partial",
            "developer",
        ),
        id="manylinux",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc/hybridbackend:nvtf1-py3.6-cu114-ubuntu18.04",
        want("HybridBackend", None, "GPU", "3.6", "11.4", U18, ((TF, "1"),), "partial"),
        id="nvidia-tensorflow",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc/tensorflow-developer:1.15deeprec-dev-cpu-cibuild-py36-ubuntu18.04",
        want(TF, "1.15deeprec", "CPU", "3.6", None, U18, build="dev-cibuild"),
        id="version-with-glued-variant",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai_product/tensorflow:py36_cpu_tf1.12_ubuntu",
        want(TF, "1.12", "CPU", "3.6", None, "ubuntu"),
        id="underscores-bare-ubuntu",
    ),
    pytest.param(
        "registry.cn-wulanchabu.aliyuncs.com/pai-dlc/acc:r2.3.0-cuda12.1.0-py3.10-nightly",
        # A nightly build is a prerelease, as a dev build is (resolve took it for a release).
        want("acc", "2.3.0-nightly", "GPU", "3.10", "12.1"),
        id="r-prefixed-version",
    ),
    pytest.param(
        "registry.cn-wulanchabu.aliyuncs.com/pai-dlc/pytorch-training:1.13.0-gpu-py3.8-cu11.8-ngc22.10-ubuntu20.04",
        want(PT, "1.13.0", "GPU", "3.8", "11.8", U20, (("NGC", "22.10"),)),
        id="dotted-cu-and-ngc",
    ),
    pytest.param(
        "dsw-registry.cn-shanghai.cr.aliyuncs.com/pai-training-algorithm/chatlearn:torch2.6.0-vllm0.8.5-te2.7-ubuntu24.04-cuda12.6-py312",
        want(
            "ChatLearn",
            None,
            "GPU",
            "3.12",
            "12.6",
            U24,
            ((PT, "2.6.0"), ("vLLM", "0.8.5"), ("TransformerEngine", "2.7")),
            "partial",
        ),
        id="components-only",
    ),
    pytest.param(
        "dsw-registry.cn-shanghai.cr.aliyuncs.com/pai-training-algorithm/chatlearn:torch2.6.0-vllm0.8.5-ubuntu24.04-cuda12.6-py312-v1.0",
        want(
            "ChatLearn",
            None,
            "GPU",
            "3.12",
            "12.6",
            U24,
            ((PT, "2.6.0"), ("vLLM", "0.8.5")),
            "partial",
            "v1.0",
        ),
        id="trailing-v-version-is-build",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-training-algorithm/isaaclab:2.3.2-isaacsim5.1.0-py311-ubuntu24.04",
        want("IsaacLab", "2.3.2", None, "3.11", None, U24, (("IsaacSim", "5.1.0"),)),
        id="isaac",
    ),
    pytest.param(
        "registry.cn-hangzhou.aliyuncs.com/eas/pi_imemb_tb:v0.0.1-20191023130701",
        want("pi_imemb_tb", "0.0.1", build="20191023130701"),
        id="timestamp-14-digits",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc-share/deeprec-developer:deeprec-dev-cpu-py36-ubuntu18.04",
        want("DeepRec", None, "CPU", "3.6", None, U18, status="partial", build="dev"),
        id="dev-flavour-not-prerelease",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-dlc-share/deeprec-training:deeprec2204u1-gpu-py36-cu110-ubuntu18.04",
        want("DeepRec", "2204u1", "GPU", "3.6", "11.0", U18),
        id="version-glued-to-own-name",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/paiflow-core/base:0.1.0",
        want("base", "0.1.0"),
        id="generic-repo-without-framework",
    ),
    pytest.param(
        "dsw-registry-vpc.cn-beijing.cr.aliyuncs.com/pai/openclawtestsave:openclawtestsave",
        want("openclawtestsave", None, status="partial", build="openclawtestsave"),
        id="word-only-tag",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easycv/torch_cuda:easyanimate",
        want("torch_cuda", None, components=(("EasyAnimate", None),), status="partial"),
        id="app-name-tag",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/easyrec:py36-paitf1.12-0.8.5",
        want("EasyRec", "0.8.5", None, "3.6", components=((TF, "1.12"),)),
        id="python-first-app-version-last",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/easyrec:py38-tf2.12gpu",
        want("EasyRec", None, "GPU", "3.8", components=((TF, "2.12"),), status="partial"),
        id="accelerator-glued-to-framework",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/easyrec:sok-tf212-gpus-v5",
        want("EasyRec", None, "GPU", components=((TF, "2.12"),), status="partial", build="sok-v5"),
        id="compact-tf-gpus",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/tzrec-devel:0.7-tst-cu124",
        want("TorchEasyRec", "0.7", "GPU", None, "12.4", build="tst"),
        id="tzrec-package-name",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/tzrec-devel:1.1-ppu",
        want("TorchEasyRec", "1.1", "PPU"),
        id="ppu",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/tzrec-test:0.9-cpu-rc2",
        want("tzrec-test", "0.9rc2", "CPU"),
        id="standalone-prerelease",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/tzrec-test:1.2-cpu-u2",
        want("tzrec-test", "1.2", "CPU", build="u2"),
        id="update-suffix",
    ),
    pytest.param(
        "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/mybigpai/pairag:0.0.2_gpu",
        want("pairag", "0.0.2", "GPU"),
        id="underscore-accelerator",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/mybigpai/nni:cpu-latest",
        want("nni", None, "CPU", status="partial", build="latest"),
        id="cpu-latest",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-ai-test/eas-service:easycv_blade_181_export",
        want(
            "eas-service",
            None,
            components=(("EasyCV", None), ("Blade", None)),
            status="partial",
            build="181-export",
        ),
        id="names-and-bare-digits",
    ),
    pytest.param(
        "registry.cn-shanghai.aliyuncs.com/pai-ai-test/eas-service:easyphoto-diffusers-py310-torch201-cu117-oneflow",
        want(
            "eas-service",
            None,
            "GPU",
            "3.10",
            "11.7",
            components=(("Diffusers", None), (PT, "2.0.1"), ("OneFlow", None)),
            status="partial",
            build="easyphoto",
        ),
        id="compact-torch-patch",
    ),
    pytest.param(
        "user-test-registry-vpc.cn-wulanchabu.cr.aliyuncs.com/pai-test/pai-test:test-v1",
        want("pai-test", None, status="partial", build="test-v1"),
        id="test-image",
    ),
]


@pytest.mark.parametrize(("uri", "expected"), SHAPES)
def test_tag_shapes(uri: str, expected: dict[str, Any]) -> None:
    parsed = parse_image(uri)
    assert {field: getattr(parsed, field) for field in expected} == expected


def test_shape_rows_are_real_uris() -> None:
    real = set(tsv_uris())
    assert [p.values[0] for p in SHAPES if p.values[0] not in real] == []


def test_every_tsv_row_parses() -> None:
    uris = tsv_uris()
    assert len(uris) > 200
    for uri in uris:
        parsed = parse_image(uri)
        assert parsed.parse_status in ("ok", "partial"), uri
        assert parsed.framework, uri
        assert (parsed.parse_reason is None) == (parsed.parse_status == "ok"), uri
        rebuilt = f"{parsed.host}/{parsed.namespace}/{parsed.repository}:{parsed.tag}"
        assert rebuilt == uri, uri


def test_most_tsv_rows_are_fully_read() -> None:
    parsed = [parse_image(uri) for uri in tsv_uris()]
    ok = [p for p in parsed if p.parse_status == "ok"]
    assert len(ok) / len(parsed) > 0.75


# --- Tag tokens in every spelling -------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "field", "value"),
    [
        ("py310", "python_version", "3.10"),
        ("py36", "python_version", "3.6"),
        ("py27", "python_version", "2.7"),
        ("py3", "python_version", "3"),
        ("py3.10", "python_version", "3.10"),
        ("python3.12", "python_version", "3.12"),
        ("python3.10.19", "python_version", "3.10"),
        ("cu121", "cuda_version", "12.1"),
        ("cu110", "cuda_version", "11.0"),
        ("cu12.1", "cuda_version", "12.1"),
        ("cuda12.1", "cuda_version", "12.1"),
        ("cuda121", "cuda_version", "12.1"),
        ("cuda12.1.0", "cuda_version", "12.1"),
        ("cuda11.3.1", "cuda_version", "11.3"),
        ("ubuntu22.04", "os_version", "ubuntu22.04"),
        ("ubuntu2204", "os_version", "ubuntu22.04"),
        ("ubuntu1804", "os_version", "ubuntu18.04"),
        ("unbuntu2004", "os_version", "ubuntu20.04"),
        ("centos7", "os_version", "centos7"),
        ("alinux3", "os_version", "alinux3"),
        ("alios7", "os_version", "alios7"),
        ("debian11", "os_version", "debian11"),
        ("manylinux_2_24", "os_version", "manylinux_2_24"),
        ("ubuntu", "os_version", "ubuntu"),
        ("gpu", "accelerator", "GPU"),
        ("gpus", "accelerator", "GPU"),
        ("mkl-cpu", "accelerator", "CPU"),
        ("ppu", "accelerator", "PPU"),
        ("xpu", "accelerator", "XPU"),
        ("torch113", "components", ((PT, "1.13"),)),
        ("torch201", "components", ((PT, "2.0.1"),)),
        ("tf212", "components", ((TF, "2.12"),)),
        ("paitf1.12", "components", ((TF, "1.12"),)),
        ("tensorflow1.14", "components", ((TF, "1.14"),)),
        ("pytorch2.1.0", "components", ((PT, "2.1.0"),)),
        ("megatron0.12", "components", (("Megatron-LM", "0.12"),)),
        ("x-nccl2.19.3", "components", (("NCCL", "2.19.3"),)),
        ("2.1-v1-u1", "components", ()),
        ("2.1-gu8", "build_suffix", "gu8"),
        ("0.9-cpu-rc2", "version", "0.9rc2"),
        ("1.0-beta1", "version", "1.0beta1"),
        ("1.0-alpha", "version", "1.0alpha"),
        ("1.0-preview", "version", "1.0preview"),
        ("1.0-dev", "version", "1.0dev"),  # DESIGN: dev marks a prerelease
        ("1.0-dev", "build_suffix", None),
        ("1.0-cpu-dev", "version", "1.0"),  # not right after the version: a flavour
        ("1.0-cpu-dev", "build_suffix", "dev"),
        ("1.12", "version", "1.12"),
        ("1.0-2.0", "version", "1.0"),
        ("x-1.0-2.0", "build_suffix", "x-2.0"),
        ("1.0-cpu-85f9143-1764350887", "build_suffix", "85f9143-1764350887"),
        (
            "1.0-230219-20250903-20191023130701-0625",
            "build_suffix",
            "230219-20250903-20191023130701-0625",
        ),
        ("", "version", None),
    ],
)
def test_tag_tokens(tag: str, field: str, value: object) -> None:
    assert getattr(parse_tag(tag, "SomeApp"), field) == value


def test_a_token_reads_by_its_place_in_the_tag() -> None:
    # Tokens are classified once and remembered: the place must still count.
    assert parse_tag("v2-gpu", "SomeApp").version == "2"
    assert parse_tag("gpu-v2", "SomeApp").build_suffix == "v2"
    assert parse_tag("2024-gpu", "SomeApp").version == "2024"
    assert parse_tag("gpu-2024", "SomeApp").build_suffix == "2024"
    assert parse_tag("2024", "SomeApp").version is None


def test_tag_alone_takes_its_first_framework_as_main() -> None:
    info = parse_tag("26.07.20-cudnn9-pytorch2.11-vllm0.8")
    assert (info.framework, info.version) == (PT, "2.11")
    assert info.components == (("cuDNN", "9"), ("vLLM", "0.8"))
    assert info.build_suffix == "26.07.20"


def test_cuda_implies_gpu_but_an_explicit_token_wins() -> None:
    assert parse_image("r.example.com/pai/pytorch:2.1-cu121").accelerator == "GPU"
    assert parse_image("r.example.com/pai/pytorch:2.1-cpu-cu121").accelerator == "CPU"
    assert parse_image("r.example.com/pai/xpu-pytorch:2.1-cu121").accelerator == "XPU"
    assert parse_image("r.example.com/pai/xpu-pytorch:2.1-gpu").accelerator == "GPU"
    assert parse_image("r.example.com/pai/pytorch:2.1").accelerator is None


@pytest.mark.parametrize(
    ("repository", "framework"),
    [
        ("pytorch-training", PT),
        ("pai-pytorch-training", PT),
        ("training-xpu-pytorch", PT),
        ("lingjun-pytorch-training", PT),
        ("tensorflow-developer", TF),
        ("deeprec-developer", "DeepRec"),
        ("megatron", "Megatron-LM"),
        ("paddle-inference", "PaddlePaddle"),
        ("easyrec", "EasyRec"),
        ("pai-megatron-patch", "pai-megatron-patch"),
        ("nccl-tests", "nccl-tests"),
        ("pytorch-tensorflow", "pytorch-tensorflow"),
    ],
)
def test_framework_from_repository(repository: str, framework: str) -> None:
    assert parse_image(f"r.example.com/pai/{repository}:1.0").framework == framework


def test_canonical_framework() -> None:
    assert canonical_framework(" torch ") == "PyTorch"
    assert canonical_framework("TF") == "TensorFlow"
    assert canonical_framework("paitf") == "TensorFlow"
    assert canonical_framework("Megatron") == "Megatron-LM"
    assert canonical_framework("tritonserver") == "Triton"
    assert canonical_framework(" SomethingNew ") == "SomethingNew"
    assert all(canonical_framework(alias) == name for alias, name in KNOWN_FRAMEWORKS.items())
    assert all(key == key.lower() for key in KNOWN_FRAMEWORKS)


# --- URIs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("localhost:5000/foo:1", ("localhost:5000", None, "foo", "1", None)),
        ("localhost/foo", ("localhost", None, "foo", None, None)),
        ("pai/pytorch:1.0", (None, "pai", "pytorch", "1.0", None)),
        ("ubuntu", (None, None, "ubuntu", None, None)),
        ("r.example.com/a/b/c:t\t", ("r.example.com", "a/b", "c", "t", None)),
        (
            "r.example.com/pai/x@sha256:" + "ab" * 32,
            ("r.example.com", "pai", "x", None, "sha256:" + "ab" * 32),
        ),
        (
            " r.example.com/pai/x:1.0@sha256:" + "0" * 64 + " ",
            ("r.example.com", "pai", "x", "1.0", "sha256:" + "0" * 64),
        ),
    ],
)
def test_parse_uri(uri: str, parts: tuple[str | None, ...]) -> None:
    ref = parse_uri(uri)
    assert ref.error is None
    assert (ref.host, ref.namespace, ref.repository, ref.tag, ref.digest) == parts


@pytest.mark.parametrize(
    "uri",
    ["", "   ", "::::", "registry.example.com/", "a b c", "x@sha256:", "repo:", "/x", "a//b", None],
)
def test_bad_uris_are_unrecognized(uri: str | None) -> None:
    parsed = parse_image(uri)
    assert parsed.parse_status == "unrecognized"
    assert parsed.parse_reason
    assert (parsed.host, parsed.repository, parsed.tag, parsed.framework) == (None,) * 4
    assert parse_uri(uri or "").error == parsed.parse_reason


def test_a_bad_name_is_reported_with_each_whole_uri() -> None:
    # The name part is checked once per name: the reason must still quote the URI at hand.
    for tag in ("1", "2"):
        uri = f"bad_host.example.com/pai/x:{tag}"
        assert parse_uri(uri).error == f"the registry host in {uri!r} is malformed"


def test_labels_still_apply_to_an_unrecognized_uri() -> None:
    parsed = parse_image("::::", {"system.framework.PyTorch": "2.1", "system.official": "true"})
    assert parsed.parse_status == "unrecognized"
    assert (parsed.framework, parsed.framework_version, parsed.official) == (PT, "2.1", True)


def test_partial_reason_names_the_tag() -> None:
    parsed = parse_image("r.example.com/dsw/deeprec:deeprec-dev-cpu")
    assert parsed.parse_reason == "no framework version in tag 'deeprec-dev-cpu'"
    assert parse_image("r.example.com/dsw/deeprec").parse_status == "partial"


# --- Labels -----------------------------------------------------------------------------------

TAGGED = "r.example.com/pai/pytorch-training:1.12-gpu-py38-cu113-ubuntu20.04"


@pytest.mark.parametrize(
    ("labels", "field", "value"),
    [
        ({"system.framework.PyTorch": "1.13.1"}, "framework_version", "1.13.1"),
        ({"system.framework": "PyTorch 2.0"}, "framework_version", "2.0"),
        ({"system.chipType": "ppu"}, "accelerator", "PPU"),
        ({"system.pythonVersion": "3.9"}, "python_version", "3.9"),
        ({"system.language.Python": "3.10.12"}, "python_version", "3.10"),
        ({"system.dsw.cudaVersion": "12.1.0"}, "cuda_version", "12.1"),
        ({"system.cudaVersion": "11.8"}, "cuda_version", "11.8"),
        ({"system.dsw.os": "ubuntu", "system.dsw.osVersion": "22.04"}, "os_version", U22),
        ({"system.os": "Alinux3"}, "os_version", "alinux3"),
        ({"system.official": "TRUE"}, "official", True),
        ({"system.official": "false"}, "official", False),
        ({}, "official", False),
    ],
)
def test_label_beats_tag(labels: dict[str, str], field: str, value: object) -> None:
    assert getattr(parse_image(TAGGED, labels), field) == value


def test_framework_label_value_with_version() -> None:
    parsed = parse_image("r.example.com/pai/whatever:latest", {"system.framework": "XGBoost 1.6.0"})
    assert (parsed.framework, parsed.framework_version, parsed.parse_status) == (
        "XGBoost",
        "1.6.0",
        "ok",
    )


def test_several_framework_labels_main_is_the_repository_one() -> None:
    labels = {
        "system.framework.PyTorch": "2.5.2",
        "system.framework.ModelScope": "1.23.1",
        "system.framework.DeepSpeed": "0.15",
    }
    uri = "r.example.com/pai/modelscope:1.23.0-pytorch2.5.1-tensorflow2.16.1-gpu"
    parsed = parse_image(uri, labels)
    assert (parsed.framework, parsed.framework_version) == ("ModelScope", "1.23.1")
    assert parsed.components == ((PT, "2.5.2"), (TF, "2.16.1"), ("DeepSpeed", "0.15"))


def test_several_framework_labels_else_the_first() -> None:
    labels = {"system.framework.vllm": "0.6.3", "system.framework.torch": "2.4.0"}
    parsed = parse_image("r.example.com/pai/llm-inference:x", labels)
    assert (parsed.framework, parsed.framework_version) == ("vLLM", "0.6.3")
    assert parsed.components == ((PT, "2.4.0"),)


def test_label_keys_are_read_without_case_or_spaces() -> None:
    # A key repeated in another spelling: the last value wins, but every framework label counts.
    parsed = parse_image(TAGGED, {"system.chipType": "ppu", " SYSTEM.CHIPTYPE ": "xpu"})
    assert parsed.accelerator == "XPU"
    labels = {" System.Framework.PyTorch ": "2.3", "system.framework.pytorch": ""}
    assert parse_image(TAGGED, labels).framework_version == "2.3"


def test_scopes_from_labels() -> None:
    labels = {"system.supported.eas": "True", "system.supported.dlc": "true"}
    parsed = parse_image(TAGGED, labels | {"system.supported.dsw": "false"})
    assert (parsed.scopes, parsed.scope_inferred) == (("inference", "training"), False)


@pytest.mark.parametrize(
    ("repository", "scopes"),
    [
        ("pytorch-training", ("training",)),
        ("python-inference", ("inference",)),
        ("tensorflow-developer", ("develop",)),
        ("tzrec-devel", ("develop",)),
        ("training", ("training",)),
        ("inference", ("inference",)),
    ],
)
def test_scopes_inferred_from_repository(repository: str, scopes: tuple[str, ...]) -> None:
    parsed = parse_image(f"r.example.com/pai/{repository}:1.0", {"system.official": "true"})
    assert (parsed.scopes, parsed.scope_inferred) == (scopes, True)
    # Any scope label, even "false", is the labels speaking: the name no longer decides.
    labelled = parse_image(f"r.example.com/pai/{repository}:1.0", {"system.supported.dsw": "false"})
    assert (labelled.scopes, labelled.scope_inferred) == ((), False)


def test_no_scope_label_and_no_suffix() -> None:
    parsed = parse_image("r.example.com/pai/pytorch:1.0")
    assert (parsed.scopes, parsed.scope_inferred) == ((), False)


def test_unknown_labels_change_nothing() -> None:
    noise = {"system.origin": "PAI", "foo": "bar", "": "", "system.framework.": "1.0"}
    noise |= {"system.framework": "", "system.chipType": "", "SYSTEM.SOURCE": "x"}
    assert parse_image(TAGGED, noise) == parse_image(TAGGED)


# --- Properties -------------------------------------------------------------------------------

label_dicts = st.dictionaries(
    st.one_of(
        st.text(),
        st.sampled_from(
            [
                "system.framework",
                "system.framework.PyTorch",
                "system.chipType",
                "system.supported.dlc",
                "system.dsw.cudaVersion",
                "system.pythonVersion",
                "system.dsw.os",
                "system.official",
            ]
        ),
    ),
    st.text(),
    max_size=6,
)
TOKENS = [
    "1.15PAI", "2.1", "v0.5.17", "r2.3.0", "gpu", "cpu", "mkl", "ppu", "py310", "py3.6",
    "python3.12", "cu121", "cuda12.1.0", "cudnn8", "ubuntu2204", "manylinux_2_24", "torch201",
    "pytorch2.3.0tensorflow2.16.1", "tf2.12gpu", "deeprec2204u1", "vllm", "0.2.6", "rc2", "dev",
    "85f9143", "1764350887", "accelerated", "v1.0", "u1", "1", "tensorrt", "llm", "acclep1.2.1",
    "x", "", "İ", "1.0.0rc1.dev2", "0625",
]  # fmt: skip


@given(st.text(), label_dicts)
def test_parse_image_never_raises(uri: str, labels: dict[str, str]) -> None:
    parsed = parse_image(uri, labels)
    assert parsed.parse_status in ("ok", "partial", "unrecognized")
    assert set(parsed.scopes) <= set(SCOPES)


@given(
    st.from_regex(r"[a-z0-9.-]{1,12}/[a-z0-9_-]{1,12}/[a-z0-9-]{1,20}", fullmatch=True),
    st.lists(st.sampled_from(TOKENS), max_size=8),
    st.sampled_from(["-", "_"]),
    label_dicts,
)
def test_realistic_uris_never_raise(
    name: str, tokens: list[str], sep: str, labels: dict[str, str]
) -> None:
    tag = sep.join(tokens)
    parsed = parse_image(f"{name}:{tag}" if tag else name, labels)
    assert parsed.parse_status in ("ok", "partial", "unrecognized")
    info = parse_tag(tag)
    assert info.build_suffix is None or info.build_suffix.strip("-") == info.build_suffix


PHASES = ["rc", "alpha", "beta", "a", "b", "dev", "preview"]
releases = st.lists(st.integers(0, 30), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts))
)
versions = st.one_of(
    releases,
    st.tuples(releases, st.sampled_from(PHASES), st.integers(0, 9)).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}"
    ),
    st.tuples(releases, st.sampled_from(["-accl", "PAI", "-deeprec2206", "+build5"])).map("".join),
    st.sampled_from(["", "latest", "nightly", "abc"]),
    st.text(max_size=6),
)


@given(versions, versions)
def test_compare_is_total_and_antisymmetric(a: str, b: str) -> None:
    assert compare(a, b) in (-1, 0, 1)
    assert compare(a, b) == -compare(b, a)
    assert compare(a, a) == 0


@given(versions, versions, versions)
def test_compare_is_transitive(a: str, b: str, c: str) -> None:
    low, mid, high = sorted([a, b, c], key=sort_key)
    assert compare(low, mid) <= 0 and compare(mid, high) <= 0 and compare(low, high) <= 0


@given(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99))
def test_numeric_not_lexical_order(major: int, minor: int, other: int) -> None:
    assume(minor != other)
    expected = 1 if minor > other else -1
    assert compare(f"{major}.{minor}", f"{major}.{other}") == expected
    assert compare("2.10", "2.9") == 1


@given(releases, st.sampled_from(PHASES), st.integers(0, 9))
def test_prerelease_below_release(release: str, phase: str, number: int) -> None:
    assert compare(f"{release}{phase}{number}", release) == -1


@given(releases, st.from_regex(r"[a-z]{3,8}", fullmatch=True))
def test_build_variant_equals_release(release: str, word: str) -> None:
    assume(word not in {"dev", "alpha", "beta", "preview", "pre"})
    assert compare(f"{release}-{word}", release) == 0


@given(releases, st.from_regex(r"[a-zA-Z][a-zA-Z._-]{0,8}", fullmatch=True))
def test_unparseable_sorts_below_parseable(release: str, junk: str) -> None:
    assume(parse_version(junk) is None)
    assert compare(junk, release) == -1
    assert compare(None, release) == -1


@given(st.integers(0, 99), st.integers(0, 99))
def test_short_equals_padded(major: int, minor: int) -> None:
    assert compare(f"{major}.{minor}", f"{major}.{minor}.0") == 0
    assert compare("2.1", "2.1.0") == 0


@pytest.mark.parametrize(
    ("token", "field", "meaning"),
    [
        ("py310", "python_version", "3.10"),
        ("python3.10", "python_version", "3.10"),
        ("py3.11.4", "python_version", "3.11"),
        ("py27", "python_version", "2.7"),
        ("py3", "python_version", "3"),
        ("cu121", "cuda_version", "12.1"),
        ("cuda12.1", "cuda_version", "12.1"),
        ("cu118", "cuda_version", "11.8"),
        ("cu12", "cuda_version", "12"),
    ],
)
def test_a_python_or_cuda_version_means_the_same_in_a_tag_and_in_a_request(
    token: str, field: str, meaning: str
) -> None:
    """A tag's py310 and a request's --python py310 are one version: one reading of both."""
    from catalog.read.filters import make_filters

    assert getattr(parse_tag(f"2.1-gpu-{token}-ubuntu22.04", "PyTorch"), field) == meaning
    asked = {"python_version": None, "cuda_version": None, field: token}
    filters = make_filters(
        None, None, None, None, os=None, include_removed=False, as_of=None, **asked
    )
    assert (filters.python if field == "python_version" else filters.cuda) == meaning
