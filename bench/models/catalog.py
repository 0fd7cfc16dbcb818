"""The catalogue of named models: data only (family, source, upstream name, native resolution).

EfficientNets come from torchvision, whose B0-B7 follow the paper (Tan & Le 2019) and whose native
resolutions are the paper's: 224, 240, 260, 300, 380, 456, 528, 600. The ViTs of the founding experiment
come from timm.
"""

from bench.models.registry import register_model

EFFICIENTNET_NATIVE = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}

for _b, _res in EFFICIENTNET_NATIVE.items():
    register_model(f"efficientnet_b{_b}", family="efficientnet", source="torchvision", native_resolution=_res)

for _name in ("resnet18", "resnet34", "resnet50", "resnet101"):
    register_model(_name, family="resnet", source="torchvision", native_resolution=224)

for _name in ("wide_resnet50_2", "wide_resnet101_2"):
    register_model(_name, family="wide_resnet", source="torchvision", native_resolution=224)

for _name in ("vgg11", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn", "vgg19_bn"):
    register_model(_name, family="vgg", source="torchvision", native_resolution=224)

register_model("mobilenet_v2", family="mobilenet", source="torchvision", native_resolution=224)

for _name in ("vit_small_patch16_224", "vit_base_patch16_224", "vit_small_patch8_224", "vit_base_patch8_224"):
    register_model(_name, family="vit", source="timm", native_resolution=224, resolution_arg="img_size")

register_model("visformer_small", family="visformer", source="timm", native_resolution=224, resolution_arg="img_size")

# bench's own: a small configurable CNN (bench.models.small_cnn); its shape depends on the input size.
register_model("small_cnn", family="small_cnn", source="bench", native_resolution=32, resolution_arg="img_size")
