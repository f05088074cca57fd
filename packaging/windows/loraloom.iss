; Inno Setup script for the Windows installer (not built or tested here: see packaging/README.md).
; Build on Windows after `make package` (or `pyinstaller packaging\loraloom.spec`):
;   iscc packaging\windows\loraloom.iss
; The installer holds the GUI only (~250 MB); the worker's torch is installed on first use
; into %LOCALAPPDATA%\loraloom (app/core/worker_env.py), so no multi-GB installer.

#define AppName "LoRA Loom"
#define AppVersion "0.1.0"
#define AppId "io.github.loraloom.LoRALoom"

[Setup]
AppId={{8E0C3C52-5A0B-4C5E-9C3B-2E6D1B4A7F10}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=The LoRA Loom authors
AppPublisherURL=https://github.com/loraloom/loraloom
DefaultDirName={autopf}\LoRA Loom
DefaultGroupName=LoRA Loom
; Per-user install by default: no administrator rights needed, like the data folder.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
OutputDir=..\..\dist
OutputBaseFilename=LoRA-Loom-{#AppVersion}-setup
SetupIconFile=loraloom.ico
UninstallDisplayIcon={app}\loraloom.exe
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
WizardStyle=modern
ChangesAssociations=yes

[Files]
Source: "..\..\dist\loraloom\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\LoRA Loom"; Filename: "{app}\loraloom.exe"; Parameters: "gui"
Name: "{autodesktop}\LoRA Loom"; Filename: "{app}\loraloom.exe"; Parameters: "gui"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "safetensors"; Description: "Open .safetensors files with LoRA Loom"; GroupDescription: "File types:"

[Registry]
; "Open with LoRA Loom" for adapters (shows the file in the Library tab: `loraloom gui FILE`).
Root: HKA; Subkey: "Software\Classes\.safetensors\OpenWithProgids"; ValueType: string; ValueName: "{#AppId}.safetensors"; ValueData: ""; Flags: uninsdeletevalue; Tasks: safetensors
Root: HKA; Subkey: "Software\Classes\{#AppId}.safetensors"; ValueType: string; ValueName: ""; ValueData: "Safetensors weights"; Flags: uninsdeletekey; Tasks: safetensors
Root: HKA; Subkey: "Software\Classes\{#AppId}.safetensors\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\loraloom.exe,0"; Tasks: safetensors
Root: HKA; Subkey: "Software\Classes\{#AppId}.safetensors\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\loraloom.exe"" gui ""%1"""; Tasks: safetensors

[Run]
Filename: "{app}\loraloom.exe"; Parameters: "gui"; Description: "{cm:LaunchProgram,LoRA Loom}"; Flags: nowait postinstall skipifsilent
