# LongAnimation for Nuke: the Nodes menu entry (GUI sessions only).
import nuke

if nuke.GUI:
    import longanim_nuke

    longanim_nuke.register_menu()
