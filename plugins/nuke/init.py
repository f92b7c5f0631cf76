# LongAnimation for Nuke: on NUKE_PATH (or copied into ~/.nuke); see README.md.
import nuke

nuke.pluginAddPath("./longanim_site")  # where README.md installs the longanim package for Nuke's Python
import longanim_nuke

longanim_nuke.register()
