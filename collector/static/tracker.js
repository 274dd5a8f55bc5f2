/* placeholder: the tracker is being written */
