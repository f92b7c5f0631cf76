"""The "LongAnimation Colorize" compositor node group: the colored sequence over the line
art (the group's input, e.g. the Render Layers image), the confidence map on a second output.

Built again on every run (the sequence's range may have changed), so an artist's edits inside
the group do not survive; outside it, the group node and its links stay. Works with
Blender 4.5 (scene.node_tree, "Composite") and 5.x (scene.compositing_node_group,
Group Output); Alpha Over's sockets are found by name with 4.5's positions as fallback.
"""

from __future__ import annotations

import os

import bpy

from . import frames as F

GROUP_NAME = "LongAnimation Colorize"
NODE_NAME = "LongAnimation Colorize"


def _sequence_image(path: str, name: str):
    image = bpy.data.images.get(name)
    if image is None or bpy.path.abspath(image.filepath) != path:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    image.source = "SEQUENCE"
    image.reload()
    return image


def _image_node(tree, image, first: int, last: int, location):
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    node.frame_start = first  # scene frame that shows the first file...
    node.frame_offset = first - 1  # ...whose number is `first`: file number == scene frame
    node.frame_duration = last - first + 1
    node.use_auto_refresh = True
    node.location = location
    return node


def _socket(sockets, name: str, index: int):
    return sockets.get(name) or sockets[index]


def build_group(scene, folder: str, name: str, first: int, last: int, ext: str = "png"):
    group = bpy.data.node_groups.get(GROUP_NAME)
    if group is None:
        group = bpy.data.node_groups.new(GROUP_NAME, "CompositorNodeTree")
    group.nodes.clear()
    group.interface.clear()
    group.interface.new_socket("Line Art", in_out="INPUT", socket_type="NodeSocketColor")
    group.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    group.interface.new_socket("Confidence", in_out="OUTPUT", socket_type="NodeSocketColor")

    color = _sequence_image(str(F.frame_path(folder, name, first, ext)), f"{name} (colored)")
    conf = _sequence_image(str(F.frame_path(os.path.join(folder, "confidence"), name, first)), f"{name} (confidence)")
    inp = group.nodes.new("NodeGroupInput")
    inp.location = (-500, 0)
    out = group.nodes.new("NodeGroupOutput")
    out.location = (400, 0)
    colored = _image_node(group, color, first, last, (-500, -200))
    colored.name = colored.label = "Colored"
    confidence = _image_node(group, conf, first, last, (-500, -500))
    confidence.name = confidence.label = "Confidence"
    over = group.nodes.new("CompositorNodeAlphaOver")
    over.name = "Over Line Art"
    over.location = (100, 0)
    group.links.new(inp.outputs[0], _socket(over.inputs, "Background", 1))
    group.links.new(colored.outputs["Image"], _socket(over.inputs, "Foreground", 2))
    group.links.new(over.outputs[0], out.inputs["Image"])
    group.links.new(confidence.outputs["Image"], out.inputs["Confidence"])
    _place_in_scene(scene, group)
    return group


def _scene_tree(scene):
    if hasattr(scene, "compositing_node_group"):  # Blender 5.x
        if scene.compositing_node_group is None:
            scene.compositing_node_group = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            return scene.compositing_node_group, True
        return scene.compositing_node_group, False
    fresh = not scene.use_nodes  # Blender 4.5: the scene's own tree
    scene.use_nodes = True
    return scene.node_tree, fresh


def _place_in_scene(scene, group) -> None:
    """One group node in the scene's compositor; wired from the render only into a tree
    this add-on created, so an artist's compositing is never rewired."""
    tree, fresh = _scene_tree(scene)
    node = tree.nodes.get(NODE_NAME)
    if node is None:
        node = tree.nodes.new("CompositorNodeGroup")
        node.name = node.label = NODE_NAME
        node.location = (200, 0)
    node.node_tree = group
    if not fresh:
        return
    for n in list(tree.nodes):
        if n.name != node.name:  # (bpy hands out a new Python object per access: no `is`)
            tree.nodes.remove(n)
    layers = tree.nodes.new("CompositorNodeRLayers")
    layers.location = (-200, 0)
    tree.links.new(layers.outputs["Image"], node.inputs[0])
    if hasattr(scene, "compositing_node_group"):
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        output = tree.nodes.new("NodeGroupOutput")
    else:
        output = tree.nodes.new("CompositorNodeComposite")
    output.location = (500, 0)
    tree.links.new(node.outputs["Image"], output.inputs[0])
    viewer = tree.nodes.new("CompositorNodeViewer")
    viewer.location = (500, -200)
    tree.links.new(node.outputs["Confidence"], viewer.inputs[0])
