"""Novel-view synthesis: cameras, scenes, LVSM and Efficient-LVSM with KV cache, QuadTree attention.

Models map posed input views to images at new camera poses::

    from coordfit.nvs import create_model, make_scene
    model = create_model("efficient-lvsm")
    scene = make_scene(0)
    out = model(scene.images[None, :2], scene.c2w[None, :2], scene.fxfycxcy[None, :2],
                scene.c2w[None, 2:], scene.fxfycxcy[None, 2:])   # [1, V-2, 3, H, W]
"""

from .attention import full_attention as full_attention
from .attention import quadtree_attention as quadtree_attention
from ..geometry.cameras import look_at as look_at
from ..geometry.cameras import normalize_poses as normalize_poses
from ..geometry.cameras import opengl_to_opencv as opengl_to_opencv
from ..geometry.cameras import pixel_rays as pixel_rays
from ..geometry.cameras import plucker as plucker
from .efficient_lvsm import EfficientLVSM as EfficientLVSM
from .efficient_lvsm import ViewCache as ViewCache
from .layers import NVSConfig as NVSConfig
from .lvsm import LVSM as LVSM
from .procedural import ProceduralConfig as ProceduralConfig
from .procedural import make_scene as make_scene
from .registry import SHIPPED_CHECKPOINT as SHIPPED_CHECKPOINT
from .registry import create_model as create_model
from .registry import list_models as list_models
from .registry import load_model as load_model
from .registry import save_model as save_model
from .scenes import Scene as Scene
from .scenes import load_scene as load_scene
from .scenes import save_scene as save_scene
